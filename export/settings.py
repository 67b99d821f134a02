"""Settings of one export: torch-free, built by the command line, saved in the bundle.

Kept apart from the export code so that ``--help`` shows the defaults and choices without
importing torch, and so that the choices the command line offers are the ones checked here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uwstego.image_size import Size
from uwstego.settings_io import from_dict_strict

ENGINE_MODES = ("auto", "skip", "require")
ENGINE_PRECISIONS = ("fp16", "fp32")
# ONNX Runtime against PyTorch: labels must agree on this share of pixels (export/validate.py).
MIN_AGREEMENT = 0.995
_SIZES = ("camera", "network")
_PATHS = ("samples", "cache_dir")


@dataclass(frozen=True)
class ExportSettings:
    """How to export a trained model for one camera (``uwstego export``'s options).

    ``network=None`` keeps the camera aspect with the short side at the training resolution.
    ``samples`` is a folder of images for the checks (default: the model's training frames,
    else seeded synthetic frames). ``int8`` adds ``model_int8.onnx``, calibrated on
    ``calibration_frames`` other frames of the same source. ``strict_precision`` refuses a
    check that is not informative or a reduced-precision graph below 99 % agreement.
    ``engine``: ``auto`` builds when TensorRT imports, ``require`` fails when it does not,
    ``skip`` never builds. ``unknown_label`` marks pixels beyond their cluster's novelty
    threshold with 255 in ``labels`` (edge/novelty.py). ``name`` is the model's name in reports
    (default: the training run's folder name). ``cpu_graphs`` adds the ONNX Runtime CPU graphs
    (``fused``; with ``int8`` also ``dynamic``: edge/cpu_graphs.py), which the vehicle times
    against the plain ones.
    """

    camera: Size
    network: Size | None = None
    precision: str = "fp16"
    samples: Path | None = None
    frames: int = 4
    seed: int = 0
    min_agreement: float = MIN_AGREEMENT
    engine: str = "auto"
    cache_dir: Path | None = None
    workspace_mb: int = 1024
    int8: bool = False
    calibration_frames: int = 8
    strict_precision: bool = False
    unknown_label: bool = False
    name: str | None = None
    cpu_graphs: bool = True

    def __post_init__(self) -> None:
        for key in _SIZES:
            value = getattr(self, key)
            if isinstance(value, str):
                object.__setattr__(self, key, Size.parse(value))
            elif isinstance(value, Mapping):
                object.__setattr__(self, key, Size.from_dict(value))
        for key in _PATHS:
            if isinstance(getattr(self, key), str):
                object.__setattr__(self, key, Path(getattr(self, key)))
        if not isinstance(self.camera, Size):
            raise ValueError(f"camera size {self.camera!r}: expected WIDTHxHEIGHT")
        if self.engine not in ENGINE_MODES:
            raise ValueError(f"engine {self.engine!r}: expected one of {ENGINE_MODES}")
        if self.precision not in ENGINE_PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of "
                             f"{ENGINE_PRECISIONS}")
        if self.frames < 1:
            raise ValueError(f"need at least one sample frame, got {self.frames}")
        if self.int8 and self.calibration_frames < 1:
            raise ValueError(f"INT8 needs at least one calibration frame, got "
                             f"{self.calibration_frames}")
        if self.min_agreement <= 0.0:
            raise ValueError(f"min_agreement must be positive, got {self.min_agreement}")
        if self.workspace_mb < 1:
            raise ValueError(f"workspace_mb must be positive, got {self.workspace_mb}")
        if self.name is not None and not self.name.strip():
            raise ValueError("the model name must not be empty")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: sizes as ``WxH``, paths as strings."""
        data = dataclasses.asdict(self)
        for key in _SIZES + _PATHS:
            value = getattr(self, key)
            data[key] = None if value is None else str(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportSettings:
        return from_dict_strict(cls, data, "export settings")
