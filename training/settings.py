"""Settings of the training and evaluation commands: torch-free, saved with the results.

Kept apart from the code that uses them so that the command line can show their defaults
without importing torch (the vehicle installs ``uwstego`` without it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uwstego.enhance import EnhanceSettings
from uwstego.settings_io import from_dict_strict
from uwstego.training.presets import DEFAULT_PRESET, get_preset

INTERPOLATIONS = ("nearest", "area", "bilinear")
# STEGO's five-crop plus the whole frame (training/data/crops.py, docs/stego.md §6).
DEFAULT_CROP_TYPE = "five+full"
# Items per feature-cache shard: the unit of resuming and of sharing the extraction among ranks.
SHARD_ITEMS = 256


@dataclass(frozen=True)
class PipelineSettings:
    """What ``uwstego train`` does before the head trains: data, backbone, features, KNN."""

    backbone: str = "dino_vits8"
    weights: Path | None = None
    resolution: int = 224
    crop_type: str = DEFAULT_CROP_TYPE
    enhancement: EnhanceSettings = field(default_factory=EnhanceSettings)
    feature_batch_size: int = 16
    feature_shard_items: int = SHARD_ITEMS
    knn_k: int = 30
    # Our addition to STEGO: neighbours within this many frames of the same stream rank last.
    knn_exclude_window: int | None = None
    # None: the bag's one camera topic (a bag with several cameras is refused: name one).
    topic: str | None = None
    video_stride: int = 1
    video_rate_hz: float | None = None
    # Only for demos and smoke runs: train on a randomly initialised official architecture.
    allow_random_weights: bool = False


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one run; STEGO's defaults (docs/stego.md §1, §7)."""

    preset: str = DEFAULT_PRESET
    steps: int = 5000
    batch_size: int = 16  # per process
    lr: float = 5e-4
    probe_lr: float = 5e-3
    clusters: int = 8  # K; SUIM labels 8 classes (STEGO used 27 on COCO-Stuff)
    code_dim: int = 70
    dropout: float = 0.1
    seed: int = 0
    feature_samples: int = 11
    neg_samples: int = 5
    num_neighbors: int = 7
    log_every: int = 10
    histogram_every: int = 100
    checkpoint_every: int = 250
    kmeans_samples: int = 200_000  # code vectors (pixels) drawn for the final k-means
    # Per-cluster cosine quantile below which a pixel is unknown (edge/novelty.py).
    novelty_quantile: float = 0.01

    def __post_init__(self) -> None:
        get_preset(self.preset)
        positive = ("steps", "lr", "probe_lr", "clusters", "code_dim", "feature_samples",
                    "neg_samples", "num_neighbors", "log_every", "histogram_every",
                    "checkpoint_every", "kmeans_samples")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.novelty_quantile < 0.5:
            raise ValueError(f"novelty_quantile must be in (0, 0.5), got "
                             f"{self.novelty_quantile}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (negatives come from other images), "
                             f"got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        return from_dict_strict(cls, data, "training settings")


@dataclass(frozen=True)
class EvalSettings:
    resolution: int = 320
    # The official protocol resizes images with nearest neighbour too; "area" resamples properly.
    interpolation: str = "nearest"
    flip: bool = False
    mask_kind: str = "auto"
    # Ground-truth classes; None: SUIM's 8 for colour masks, else the largest label + 1.
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got "
                             f"{self.interpolation!r}")
        if self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
