"""Per-frame figures of a replay and their summaries: latency, coverage, flicker, confidence,
scores against ground truth and agreement between two models.

Everything is accumulated frame by frame in small arrays, so a dive of hours fits in memory: a
frame's label pairs (prediction, truth) are kept as a sparse histogram of the pairs that occur.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from uwstego.contract import IGNORE_LABEL
from uwstego.replay.summary import ModelFigures, ModelSeries, Percentiles, Scored
from uwstego.scoring import Scores, hungarian_match, scores_with_assignment
from uwstego.segmenter import TIMING_KEYS, Segmentation
from uwstego.visualize import coverage

PERCENTILES = (50, 95, 99)
# Scene cuts (a synthetic dive's segments, a recording restarted): the input image itself jumps.
# Measured on small thumbnails; a cut changes them by several times a run's typical change
# (synthetic dives: 0.05-0.25 at cuts against 0.005-0.015 between neighbouring frames).
CUT_THUMB = (16, 12)
CUT_FACTOR = 4.0
CUT_MIN = 0.03
_PAIRS = 256 * 256  # (uint8 prediction, uint8 truth)


def percentiles(values: Sequence[float]) -> Percentiles:
    """p50/p95/p99, mean and max of a series (``None`` for an empty one)."""
    arr = np.asarray(values, dtype=np.float64)
    if not arr.size:
        return Percentiles()
    p50, p95, p99 = (float(np.percentile(arr, p)) for p in PERCENTILES)
    return Percentiles(p50, p95, p99, mean=float(arr.mean()), max=float(arr.max()))


def _nan_to_none(values: Sequence[float]) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(v) else float(v) for v in values)


class PairCounts:
    """Label pairs ``(prediction, truth)`` over a stream: a whole-set matrix and one per frame.

    Truth values ``IGNORE_LABEL`` (:mod:`uwstego.contract`) are never counted. The number of truth
    classes can be left open until the end (the largest value seen), since a bag does not say
    how many classes its ground truth uses.
    """

    def __init__(self) -> None:
        self.total = np.zeros(_PAIRS, dtype=np.int64)
        self._frames: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        if pred.shape != truth.shape:
            raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
        codes = (pred.astype(np.intp) << 8) | truth
        counts = np.bincount(codes.ravel(), minlength=_PAIRS)
        counts[IGNORE_LABEL::256] = 0  # every prediction paired with an ignored truth
        self.total += counts
        nz = np.flatnonzero(counts)
        self._frames.append((nz.astype(np.int32), counts[nz]))

    def truth_classes(self) -> int:
        """1 + the largest truth value seen (0 if nothing was counted)."""
        seen = np.flatnonzero(self.total.reshape(256, 256).sum(axis=0))
        return int(seen.max()) + 1 if seen.size else 0

    def _matrix(self, counts: np.ndarray, n_pred: int, n_truth: int) -> np.ndarray:
        """``conf[pred, truth]`` with at least ``n_truth`` rows, as the matching needs."""
        square = counts.reshape(256, 256)
        rows = max(n_pred, n_truth)
        conf = np.zeros((rows, n_truth), dtype=np.int64)
        conf[:n_pred] = square[:n_pred, :n_truth]
        return conf

    def confusion(self, n_pred: int, n_truth: int) -> tuple[tuple[int, ...], ...]:
        """Whole-run pixel counts ``[prediction][truth]``, for the report's matrix."""
        conf = self.total.reshape(256, 256)[:n_pred, :n_truth]
        return tuple(tuple(int(v) for v in row) for row in conf)

    def _frame_counts(self, i: int) -> np.ndarray:
        dense = np.zeros(_PAIRS, dtype=np.int64)
        codes, counts = self._frames[i]
        dense[codes] = counts
        return dense

    def scores(self, n_pred: int, n_truth: int) -> tuple[Scores, list[Scores]]:
        """Whole-set scores and, under the same matching, the scores of every frame.

        Predictions ``>= n_pred`` would be a model bug; truth values ``>= n_truth`` are ignored.
        """
        conf = self._matrix(self.total, n_pred, n_truth)
        assignment = hungarian_match(conf)
        overall = scores_with_assignment(conf, assignment)
        frames = [scores_with_assignment(self._matrix(self._frame_counts(i), n_pred, n_truth),
                                         assignment) for i in range(len(self._frames))]
        return overall, frames


class InputChange:
    """Per processed frame, how much the input image changed from the previous one (mean
    absolute difference of small RGB thumbnails, 0..1; ``None`` for the first frame)."""

    def __init__(self) -> None:
        self.values: list[float | None] = []
        self._previous: np.ndarray | None = None

    def add(self, rgb: np.ndarray) -> None:
        thumb = cv2.resize(rgb, CUT_THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._previous = self._previous, thumb
        self.values.append(None if previous is None
                           else float(np.abs(thumb - previous).mean()) / 255.0)


def scene_cuts(changes: Sequence[float | None]) -> set[int]:
    """Positions where the input image jumps (see :data:`CUT_FACTOR`): label flicker there is
    the scene changing, not the model."""
    known = [v for v in changes if v is not None]
    if not known:
        return set()
    limit = max(CUT_FACTOR * float(np.median(known)), CUT_MIN)
    return {i for i, v in enumerate(changes) if v is not None and v > limit}


@dataclass
class StreamFigures:
    """What one model did on the replayed frames."""

    class_names: list[str]
    timings_ms: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in TIMING_KEYS})
    coverage: list[np.ndarray] = field(default_factory=list)
    flicker: list[float] = field(default_factory=list)  # NaN for the first frame
    confidence_mean: list[float] = field(default_factory=list)
    confidence_p05: list[float] = field(default_factory=list)
    novel_fraction: list[float] = field(default_factory=list)
    _previous: np.ndarray | None = None

    def add(self, seg: Segmentation) -> None:
        for key in TIMING_KEYS:
            self.timings_ms[key].append(float(seg.timings_ms.get(key, math.nan)))
        self.coverage.append(coverage(seg.labels, len(self.class_names)))
        prev = self._previous
        # Labels of consecutive processed frames; a resolution change restarts the measure.
        self.flicker.append(float(np.count_nonzero(seg.labels != prev)) / seg.labels.size
                            if prev is not None and prev.shape == seg.labels.shape else math.nan)
        self._previous = seg.labels
        conf = seg.confidence
        self.confidence_mean.append(float(conf.mean()))
        self.confidence_p05.append(float(np.percentile(conf[::4, ::4], 5)))
        if seg.novel_fraction is not None:
            self.novel_fraction.append(seg.novel_fraction)

    def summary(self) -> ModelFigures:
        cov = np.array(self.coverage) if self.coverage else np.zeros((0, len(self.class_names)))
        flicker = np.array(self.flicker, dtype=np.float64)
        flicker = flicker[~np.isnan(flicker)]
        return ModelFigures(
            latency_ms=percentiles(self.timings_ms["total"]),
            latency_stages_ms={k: percentiles(v) for k, v in self.timings_ms.items()
                               if k != "total"},
            coverage_mean={name: float(cov[:, i].mean()) if len(cov) else None
                           for i, name in enumerate(self.class_names)},
            flicker=percentiles(flicker),
            confidence_mean=percentiles(self.confidence_mean),
            novel_fraction=percentiles(self.novel_fraction),
        )

    def series(self) -> ModelSeries:
        """Per-frame series, in frame order."""
        return ModelSeries(
            latency_ms=tuple(self.timings_ms["total"]),
            coverage=tuple(tuple(float(v) for v in c) for c in self.coverage),
            flicker=_nan_to_none(self.flicker),
            confidence_mean=tuple(self.confidence_mean),
            confidence_p05=tuple(self.confidence_p05),
            novel_fraction=tuple(self.novel_fraction),
        )


def scored(overall: Scores, frames: list[Scores], names: Sequence[str],
           positions: Sequence[int] | None = None, length: int | None = None) -> Scored:
    """Whole-set figures with per-class IoU by name, and the per-frame series.

    With ``positions`` (the processed frame of each scored frame) the series are spread over
    ``length`` processed frames, ``None`` where a frame was not scored.
    """
    doc = overall.to_dict()
    over_time = {"mIoU": _nan_to_none([s.miou for s in frames]),
                 "accuracy": _nan_to_none([s.accuracy for s in frames])}
    if positions is not None and length is not None:
        over_time = {key: _aligned(series, positions, length) for key, series in over_time.items()}
    return Scored(mIoU=doc["mIoU"], accuracy=doc["accuracy"],
                  per_class_iou=dict(zip(names, doc["per_class_iou"], strict=True)),
                  assignment=tuple(doc["assignment"]), pixels=doc["pixels"], over_time=over_time)


def _aligned(series: Sequence[float | None], positions: Sequence[int],
             length: int) -> tuple[float | None, ...]:
    out: list[float | None] = [None] * length
    for position, value in zip(positions, series, strict=True):
        out[position] = value
    return tuple(out)
