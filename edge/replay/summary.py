"""The replay summary: one typed, frozen document of what a replay did and measured.

The replay builds it once, after the output bag is closed; ``summary.json`` is its JSON form
(:meth:`ReplaySummary.to_dict`), read back strictly by :func:`read_summary`. The report, the CLI
and the demo read the document and never change it. Models are a list: the first is the bundle
under test, the others are compared with it (their agreement with the first is in
:attr:`ModelDoc.agreement`). Per-frame series are aligned with :attr:`ReplaySummary.frames_index`
(one entry per processed frame; ``None`` where a figure does not exist for that frame).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from uwstego.atomic import write_json_atomic

SUMMARY_FILE = "summary.json"
PRIMARY_ROLE = "model"
COMPARE_ROLE = "compare"

T = TypeVar("T")


def compare_role(position: int) -> str:
    """``compare`` for the first compared model, ``compare2``, ``compare3`` ... after it; also
    the namespace of its topics in the output bag."""
    return COMPARE_ROLE if position == 1 else f"{COMPARE_ROLE}{position}"


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99, mean and max of a series; all ``None`` for an empty series."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class BundleDoc:
    path: str
    model_sha256: str
    classes: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    backend: Mapping[str, Any]  # Segmenter.describe(): backend name, provider, precision ...
    name: str = ""  # the bundle's own name (provenance "name"), else its folder's
    provenance: Mapping[str, Any] = field(default_factory=dict)  # bundle.json's provenance
    # What a reviewer must know to trust the figures: weights, backbone, steps, clusters ...
    trust: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the report calls the model: the bundle's name, else its folder's name."""
        return self.name or Path(self.path).name


def model_labels(bundles: Sequence[BundleDoc]) -> list[str]:
    """The models' names in the report and video: each bundle's :attr:`BundleDoc.label`, with
    its position added where two bundles share a name."""
    labels = [b.label for b in bundles]
    return [f"{label} ({i + 1})" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


@dataclass(frozen=True)
class ModelFigures:
    """Whole-run figures of one model."""

    latency_ms: Percentiles
    latency_stages_ms: Mapping[str, Percentiles]
    coverage_mean: Mapping[str, float | None]  # class name -> mean share of pixels
    flicker: Percentiles  # share of pixels whose label changed from the previous frame
    confidence_mean: Percentiles
    # share of pixels beyond their cluster's novelty threshold; empty without calibration
    novel_fraction: Percentiles = field(default_factory=Percentiles)


@dataclass(frozen=True)
class ModelSeries:
    """Per-frame figures of one model, one entry per processed frame."""

    latency_ms: tuple[float, ...] = ()
    coverage: tuple[tuple[float, ...], ...] = ()  # per frame, per class
    flicker: tuple[float | None, ...] = ()  # None for the first frame and after a size change
    confidence_mean: tuple[float, ...] = ()
    confidence_p05: tuple[float, ...] = ()
    novel_fraction: tuple[float, ...] = ()  # per frame; empty when the bundle has no calibration


@dataclass(frozen=True)
class Scored:
    """Scores against a reference (ground truth, or the first model) after Hungarian matching;
    percent. ``over_time`` holds ``mIoU`` and ``accuracy`` per processed frame."""

    mIoU: float | None  # spelt as in summary.json and the report
    accuracy: float | None
    per_class_iou: Mapping[str, float | None]  # reference class name -> IoU
    assignment: tuple[int, ...]  # assignment[i]: the cluster matched to reference class i
    pixels: int
    over_time: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    # Pixel counts confusion[cluster][reference class] over the run (ground truth only).
    confusion: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class TruthDoc:
    """One model against the ground truth; ``scores`` is ``None`` when no frame was scored."""

    source: str  # the ground-truth topic or folder
    frames_scored: int
    frames_without_truth: int
    unreadable: Mapping[str, int] | tuple[str, ...] | None = None  # reasons or files
    n_classes: int | None = None
    extra_clusters: int | None = None  # clusters beyond the ground truth's classes
    scores: Scored | None = None


@dataclass(frozen=True)
class ModelDoc:
    role: str  # "model" for the bundle under test, "compare", "compare2" ... for the others
    bundle: BundleDoc
    figures: ModelFigures
    series: ModelSeries
    ground_truth: TruthDoc | None = None
    agreement: Scored | None = None  # compared models: this model against the first one


@dataclass(frozen=True)
class FrameCounts:
    to_process: int | None  # None when the bag's index does not say
    read: int
    processed: int
    skipped: int
    skip_reasons: Mapping[str, int] = field(default_factory=dict)
    damage: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def why_none(self) -> str:
        """Why no frame was processed, in one line."""
        reasons = "; ".join(f"{n} x {reason}" for reason, n in self.skip_reasons.items())
        return (f"{self.read} frames read, {self.skipped} skipped"
                + (f" ({reasons})" if reasons else "")
                + "".join(f"; {problem}" for problem in (*self.damage, *self.errors)))


@dataclass(frozen=True)
class LookDoc:
    """A frame worth looking at, drawn into the report folder (:mod:`uwstego.replay.looks`)."""

    position: int  # among the processed frames
    index: int  # on the input topic
    t_s: float  # bag time since the first processed frame
    reasons: tuple[str, ...]  # why it was picked, each with its figure
    image: str  # full-size JPEG (input | overlay per model | ground truth), in the report
    thumbnail: str  # small JPEG of the same


@dataclass(frozen=True)
class OutputsDoc:
    bag: str | None = None
    camera_info_copied: str | None = None  # the CameraInfo topic copied with the frames
    report: str | None = None
    plots: tuple[str, ...] = ()  # file names in the report folder
    video: str | None = None
    looks: tuple[LookDoc, ...] = ()  # frames to look at


@dataclass(frozen=True)
class ReplaySummary:
    uwstego_version: str
    bag: str
    topic: str
    topic_type: str
    settings: Mapping[str, Any]  # ReplaySettings, JSON-ready
    stopped: str  # "completed", "interrupted" or "error: ..."
    frames: FrameCounts
    wall_s: float
    startup_s: float | None  # from the start until the first frame was read
    throughput_fps: float | None  # steady state: first frame read to last frame written
    outputs: OutputsDoc
    models: tuple[ModelDoc, ...]  # the bundle under test first, then the compared ones
    frames_index: tuple[int, ...] = ()  # per processed frame: its index on the topic
    frames_t_ns: tuple[int, ...] = ()  # log time
    frames_stamp_ns: tuple[int, ...] = ()  # header stamp
    # How much the input image changed from the previous frame (uwstego.replay.metrics.InputChange)
    frames_input_change: tuple[float | None, ...] = ()
    realtime_max_lag_s: float | None = None  # with --realtime only
    # What a reviewer must see before any figure: random weights, stretched frames ...
    warnings: tuple[str, ...] = ()

    @property
    def primary(self) -> ModelDoc:
        """The bundle under test (``models`` is empty only when the run was stopped while the
        models were loaded)."""
        if not self.models:
            raise ValueError(f"the replay of {self.bag} stopped before its models were loaded")
        return self.models[0]

    @property
    def compared(self) -> tuple[ModelDoc, ...]:
        return self.models[1:]

    def to_dict(self, series: bool = True) -> dict[str, Any]:
        """JSON-ready; ``series=False`` leaves out every per-frame series (a headline)."""
        doc = dataclasses.asdict(self)
        return doc if series else _without(doc, _SERIES_FIELDS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplaySummary:
        return _load(cls, data, "summary")


_SERIES_FIELDS = frozenset({"series", "over_time", "frames_index", "frames_t_ns",
                            "frames_stamp_ns", "frames_input_change"})


def _without(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, (list, tuple)):
        return [_without(v, keys) for v in value]
    return value


def write_summary(path: Path, summary: ReplaySummary) -> Path:
    return write_json_atomic(path, summary.to_dict())


def read_summary(path: Path) -> ReplaySummary:
    """A ``summary.json`` read back into the document; one-line ValueError if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
        return ReplaySummary.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a replay summary ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _load(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """The dataclass ``cls`` from its ``asdict`` form, strictly (unknown keys refused)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what}: unknown fields {unknown}")
    return cls(**{k: _value(hints[k], v, f"{what}.{k}") for k, v in data.items()})


def _value(hint: Any, value: Any, what: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        alternatives = [a for a in args if a is not type(None)]
        for alternative in alternatives[:-1]:
            try:
                return _value(alternative, value, what)
            except (TypeError, ValueError):
                continue
        return _value(alternatives[-1], value, what)  # its error is the one reported
    if dataclasses.is_dataclass(hint):
        return _load(hint, value, what)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{what}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, f"{what}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{what}: expected {len(args)} values, got {len(value)}")
        return tuple(_value(a, v, f"{what}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is Mapping or origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{what}: expected an object, got {type(value).__name__}")
        return {str(k): _value(args[1], v, what) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise TypeError(f"{what}: expected {hint.__name__}, got {type(value).__name__}")
    return value
