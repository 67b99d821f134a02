"""The trained model file (``model.pt``): everything export needs, backbone weights included.

One ``torch.save`` of plain tensors, numbers, strings, lists and dicts (loadable with
``weights_only=True``), tagged with a format name and version so that other files are refused
with a clear message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uwstego.atomic import atomic_path
from uwstego.classes import (
    ClassInfo,
    check_class_count,
    check_cluster_classes,
    classes_from_list,
    classes_to_list,
)
from uwstego.enhance import EnhanceSettings
from uwstego.errors import UwstegoError
from uwstego.novelty import NoveltyCalibration
from uwstego.training.head import HeadConfig, SegmentationHead

FORMAT = "uwstego.trained_model"
FORMAT_VERSION = 1
# The model file of a training output folder.
MODEL_FILE = "model.pt"
log = logging.getLogger(__name__)


class ModelFileError(UwstegoError, ValueError):
    """A model file that is damaged, from another program or from an incompatible version."""


@dataclass(frozen=True)
class TrainedModel:
    backbone: str
    backbone_state: dict[str, torch.Tensor]
    head_config: HeadConfig
    head_state: dict[str, torch.Tensor]
    centroids: np.ndarray  # [K, D] float32, unit rows
    classes: tuple[ClassInfo, ...]
    enhancement: EnhanceSettings
    resolution: int
    provenance: Mapping[str, Any] = field(default_factory=dict)
    # None for models trained before calibration existed (or imported): novelty unavailable.
    # Per class of ``classes`` (clusters merged into one class share one calibration).
    calibration: NoveltyCalibration | None = None
    # Class index of each centroid (edge/classes.py ``merge_by_name``); empty: cluster k is
    # class k. Export applies it after the argmax, so labels are class indices.
    cluster_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        cent = np.asarray(self.centroids, dtype=np.float32)
        if cent.ndim != 2 or cent.shape[1] != self.head_config.code_dim:
            raise ValueError(f"centroids must be [K, {self.head_config.code_dim}], got "
                             f"{cent.shape}")
        norms = np.linalg.norm(cent, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-4):
            raise ValueError(f"centroids must be unit rows, norms range {norms.min():.4g}.."
                             f"{norms.max():.4g}")
        check_class_count(cent.shape[0])
        if not self.cluster_classes and len(self.classes) != cent.shape[0]:
            raise ValueError(f"{len(self.classes)} class names for {cent.shape[0]} centroids")
        table = check_cluster_classes(self.cluster_classes or range(len(self.classes)),
                                      cent.shape[0], len(self.classes))
        if self.resolution <= 0:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if self.calibration is not None and self.calibration.num_clusters != len(self.classes):
            raise ValueError(f"novelty calibration of {self.calibration.num_clusters} classes "
                             f"for {len(self.classes)} classes")
        object.__setattr__(self, "centroids", cent)
        object.__setattr__(self, "cluster_classes", table)
        object.__setattr__(self, "classes", tuple(self.classes))

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def merged(self) -> bool:
        """Some clusters share a class."""
        return len(self.classes) < self.num_clusters

    @property
    def cluster_names(self) -> tuple[ClassInfo, ...]:
        """The class of each cluster (names repeat where clusters were merged)."""
        return tuple(self.classes[c] for c in self.cluster_classes)

    def with_classes(self, classes: Sequence[ClassInfo],
                     cluster_classes: Sequence[int] = (),
                     calibration: NoveltyCalibration | None = None) -> TrainedModel:
        """The same model with other names and colours and, given ``cluster_classes``, another
        cluster -> class table. A new table needs the ``calibration`` of its classes (None:
        none); names alone keep the calibration."""
        table = tuple(cluster_classes)
        same = (table or tuple(range(len(classes)))) == self.cluster_classes
        return dataclasses.replace(self, classes=tuple(classes), cluster_classes=table,
                                   calibration=self.calibration if same else calibration)

    def build_modules(self, device: torch.device | str = "cpu"):
        """``(backbone, head)`` with the stored weights, frozen, in eval mode, on ``device``."""
        from uwstego.training.backbones import DinoViT, backbone_config

        backbone = DinoViT(backbone_config(self.backbone), name=self.backbone)
        backbone.load_state_dict(self.backbone_state)
        head = SegmentationHead(self.head_config)
        head.load_state_dict(self.head_state)
        for module in (backbone, head):
            module.eval().requires_grad_(False).to(device)
        return backbone, head

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "backbone_state": dict(self.backbone_state),
            "head_config": self.head_config.to_dict(),
            "head_state": dict(self.head_state),
            "centroids": torch.from_numpy(self.centroids.copy()),
            "classes": classes_to_list(self.classes),
            "enhancement": self.enhancement.to_dict(),
            "resolution": self.resolution,
            "provenance": dict(self.provenance),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "cluster_classes": list(self.cluster_classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainedModel:
        return cls(
            backbone=str(data["backbone"]),
            backbone_state=dict(data["backbone_state"]),
            head_config=HeadConfig.from_dict(data["head_config"]),
            head_state=dict(data["head_state"]),
            centroids=np.asarray(data["centroids"].numpy(), dtype=np.float32),
            classes=classes_from_list(data["classes"]),
            enhancement=EnhanceSettings.from_dict(data["enhancement"]),
            resolution=int(data["resolution"]),
            provenance=dict(data.get("provenance", {})),
            calibration=(NoveltyCalibration.from_dict(data["calibration"])
                         if data.get("calibration") is not None else None),
            cluster_classes=tuple(int(c) for c in data.get("cluster_classes", ())),
        )


def save_trained_model(path: str | Path, model: TrainedModel) -> Path:
    """Write ``model`` to ``path`` atomically (complete or absent, never partial)."""
    path = Path(path)
    payload = model.to_dict()
    payload["backbone_state"] = {k: v.detach().cpu() for k, v in model.backbone_state.items()}
    payload["head_state"] = {k: v.detach().cpu() for k, v in model.head_state.items()}
    # Plain JSON types only, so the file loads with weights_only=True (no pickled classes).
    payload["provenance"] = json.loads(json.dumps(payload["provenance"], default=str))
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.info("wrote %s (%d clusters, backbone %s)", path, model.num_clusters, model.backbone)
    return path


def load_trained_model(path: str | Path) -> TrainedModel:
    """Read a ``model.pt``; every refusal names the file and the problem."""
    path = Path(path)
    if path.is_dir():
        candidate = path / MODEL_FILE
        if not candidate.is_file():
            raise FileNotFoundError(f"{path} is a folder without {MODEL_FILE}: pass the model file "
                                    "or a training output folder")
        path = candidate
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable uwstego model file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a uwstego model file (no '{FORMAT}' tag); a training "
                             "state checkpoint or another program's file?")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {version!r}, this uwstego reads "
                             f"version {FORMAT_VERSION}")
    try:
        return TrainedModel.from_dict(data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid or missing field ({exc!r})") from exc
