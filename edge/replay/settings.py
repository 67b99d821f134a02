"""How a replay runs: the frozen settings that ``uwstego replay``'s options fill in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uwstego.contract import IGNORE_LABEL
from uwstego.objects import ObjectSettings
from uwstego.replay.outputs import CONFIDENCE_MODES, NODE_NAMESPACE, OVERLAY_MODES
from uwstego.settings_io import from_dict_strict
from uwstego.survey.navigation import DEFAULT_MAX_GAP_S


@dataclass(frozen=True)
class ReplaySettings:
    topic: str | None = None  # None: /camera/image_raw(/compressed) or the only image topic
    fps: float | None = None  # footage's frame rate (None: the video's own; folders 10)
    every: int = 1
    realtime: bool = False  # pace frames by their bag timestamps
    backend: str = "auto"
    precision: str = "fp16"
    gt_topic: str | None = None
    gt_dir: Path | None = None
    gt_classes: int | None = None  # None: len(gt_names), else 1 + the largest label seen
    gt_names: tuple[str, ...] | None = None  # ground-truth class names for the report
    overlay_alpha: float = 0.5
    namespace: str = NODE_NAMESPACE
    storage: str = "mcap"
    bag_overlay: str = "jpeg"  # the output bag's overlay: jpeg (CompressedImage), raw, off
    bag_confidence: str = "mono16"  # mono16/mono8 scaled, 32FC1 (the node's), off
    progress: bool = True
    threads: int = 0  # ONNX Runtime intra-op threads; 0: one per core
    cpu_graph: str = "auto"  # ONNX Runtime's CPU graph (edge/cpu_graphs.py); auto: fastest here
    nav_topic: str | None = None  # None: the bag's navigation topic, if any (docs/survey.md)
    max_nav_gap_s: float = DEFAULT_MAX_GAP_S
    trusted_keys: tuple[str, ...] = ()  # PEM public keys: only bundles signed by one load
    objects: ObjectSettings = field(default_factory=ObjectSettings)  # docs/objects.md "Replay"
    gt_objects: tuple[str, ...] | None = None  # None: the object classes the truth has too
    object_iou: float = 0.5  # box overlap at which a detection finds a true object

    def __post_init__(self) -> None:
        if not self.max_nav_gap_s > 0:
            raise ValueError(f"the navigation gap tolerance must be > 0 s, got "
                             f"{self.max_nav_gap_s}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.every < 1:
            raise ValueError(f"--every must be >= 1, got {self.every}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"--fps must be > 0, got {self.fps}")
        if self.bag_overlay not in OVERLAY_MODES:
            raise ValueError(f"the bag's overlay must be one of {OVERLAY_MODES}, got "
                             f"{self.bag_overlay!r}")
        if self.bag_confidence not in CONFIDENCE_MODES:
            raise ValueError(f"the bag's confidence must be one of {CONFIDENCE_MODES}, got "
                             f"{self.bag_confidence!r}")
        if self.gt_topic and self.gt_dir:
            raise ValueError("give ground truth either as a topic or as a folder, not both")
        if self.gt_classes is not None and not 1 <= self.gt_classes <= IGNORE_LABEL:
            raise ValueError(f"ground-truth classes must be in 1..{IGNORE_LABEL}, got "
                             f"{self.gt_classes}")
        if not 0.0 < self.object_iou <= 1.0:
            raise ValueError(f"--object-iou must be in (0, 1], got {self.object_iou}")
        if self.gt_names is not None and self.gt_classes is not None \
                and len(self.gt_names) != self.gt_classes:
            raise ValueError(f"{len(self.gt_names)} ground-truth names for "
                             f"{self.gt_classes} ground-truth classes")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings, tuples as lists), as :meth:`from_dict` reads it back."""
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplaySettings:
        """The settings back from :meth:`to_dict`, strictly (unknown keys are refused)."""
        data = dict(data)
        if isinstance(data.get("objects"), Mapping):
            data["objects"] = from_dict_strict(ObjectSettings, data["objects"], "object settings")
        if data.get("gt_dir") is not None:
            data["gt_dir"] = Path(data["gt_dir"])
        return from_dict_strict(cls, data, "replay settings")
