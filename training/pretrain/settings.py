"""Settings of one pretraining run: torch-free (the command line shows its defaults), saved in
every checkpoint. Defaults are the official DINO ones (docs/pretrain.md §5) unless noted."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from uwstego.settings_io import from_dict_strict


@dataclass(frozen=True)
class PretrainSettings:
    backbone: str = "dino_vitti8"
    epochs: int = 100
    batch_size: int = 64            # per process
    global_size: int = 224          # px of the 2 global crops
    local_size: int = 96            # px of the local crops
    local_crops: int = 8
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    out_dim: int = 65536            # K, prototypes of the projection head
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    drop_path_rate: float = 0.1
    lr: float = 0.0005              # at a global batch of 256, scaled linearly
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    clip_grad: float = 3.0          # 0: no clipping
    freeze_last_layer: int = 1      # epochs
    fp16: bool = False              # official default True (CUDA); ours off for the CPU
    seed: int = 0
    frame_size: int = 0             # short side of the cached frames; 0: 1.5 x global_size
    # Our additions: step-based logging, checkpoints and the held-out probe.
    log_every: int = 10
    checkpoint_every: int = 100
    eval_every: int = 0             # 0: only at the end (when an eval dive is given)
    eval_clusters: int = 9
    eval_size: int = 0              # short side of eval frames; 0: global_size

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "global_size", "out_dim", "hidden_dim",
                    "bottleneck_dim", "lr", "student_temp", "teacher_temp",
                    "warmup_teacher_temp", "log_every", "checkpoint_every", "eval_clusters")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("local_crops", "local_size", "warmup_epochs", "warmup_teacher_temp_epochs",
                     "freeze_last_layer", "clip_grad", "eval_every", "frame_size", "eval_size",
                     "min_lr", "weight_decay", "weight_decay_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.local_crops and not self.local_size:
            raise ValueError("local crops need a positive local_size")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {(lo, hi)}")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        for name in ("momentum_teacher", "center_momentum"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.warmup_teacher_temp_epochs > self.epochs:
            raise ValueError(f"warmup_teacher_temp_epochs {self.warmup_teacher_temp_epochs} "
                             f"exceeds epochs {self.epochs}")

    @property
    def cached_frame_size(self) -> int:
        return self.frame_size or round(1.5 * self.global_size)

    @property
    def eval_frame_size(self) -> int:
        return self.eval_size or self.global_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainSettings:
        return from_dict_strict(cls, data, "pretraining settings")
