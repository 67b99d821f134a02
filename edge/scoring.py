"""Unsupervised segmentation scores: whole-set confusion matrix, Hungarian matching, mIoU.

Implements the STEGO evaluation protocol (docs/stego.md §8) without torch, so that the
vehicle-side replay and the training code share one scorer:

- ``conf[cluster, class]`` is accumulated over the whole evaluation set, not per image;
- clusters are matched to classes once, by a maximum-weight assignment on that whole-set matrix;
- ``IoU_i = tp / (gt_i + pred_k(i) - tp)``; mIoU averages the IoUs that are not NaN;
- accuracy is ``sum(tp) / sum(conf)`` after matching.

By default every prediction counts: pixels in clusters that were not matched to a class are errors.
``paper_compatible=True`` reproduces the official ``UnsupervisedMetrics`` quirk instead (pixels
predicted into clusters ``>= n_classes`` are dropped, unmatched clusters are merged into one extra
row that is averaged into mIoU), for comparison with published numbers only.

scipy (for the assignment) is imported only when scores are computed, so the vehicle can replay
without it as long as no ground truth is scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from uwstego.errors import MissingPackage, missing_package


class ScoringUnavailable(MissingPackage):
    """Ground-truth scoring needs scipy, which the vehicle's minimal install may lack."""


@dataclass(frozen=True)
class Scores:
    """Figures in percent; ``assignment[i]`` is the cluster matched to class i."""

    miou: float
    accuracy: float
    per_class_iou: tuple[float, ...]
    assignment: tuple[int, ...]
    pixels: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN (a class never seen and never predicted) becomes ``None``."""
        return {
            "mIoU": _finite_or_none(self.miou),
            "accuracy": _finite_or_none(self.accuracy),
            "per_class_iou": [_finite_or_none(v) for v in self.per_class_iou],
            "assignment": list(self.assignment),
            "pixels": self.pixels,
        }


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _linear_sum_assignment() -> Any:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:
        raise ScoringUnavailable(missing_package("scoring against ground truth",
                                                 "scipy")) from exc
    return linear_sum_assignment


def check_scoring_available() -> None:
    """Raise :class:`ScoringUnavailable` now rather than after a long run."""
    _linear_sum_assignment()


def hungarian_match(conf: np.ndarray) -> np.ndarray:
    """Cluster index per class maximising the matched pixel count of ``conf[cluster, class]``."""
    linear_sum_assignment = _linear_sum_assignment()
    if conf.shape[0] < conf.shape[1]:
        raise ValueError(f"{conf.shape[0]} clusters cannot be matched to {conf.shape[1]} classes")
    classes, clusters = linear_sum_assignment(conf.T, maximize=True)
    assignment = np.empty(conf.shape[1], dtype=np.int64)
    assignment[classes] = clusters
    return assignment


class Confusion:
    """Accumulates ``conf[cluster, class]`` over many frames of predictions and labels.

    ``n_classes`` is the number of ground-truth classes; labels outside ``0..n_classes-1`` (255
    marks "ignore") are not scored. Predictions are cluster indices in
    ``0..n_classes + extra_clusters - 1``.
    """

    def __init__(self, n_classes: int, extra_clusters: int = 0) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if extra_clusters < 0:
            raise ValueError(f"extra_clusters must be >= 0, got {extra_clusters}")
        self.n_classes = n_classes
        self.extra_clusters = extra_clusters
        self.matrix = np.zeros((self.n_clusters, n_classes), dtype=np.int64)
        # Predictions into clusters >= n_classes; the paper-compatible score drops them.
        self._beyond = np.zeros((self.n_clusters, n_classes), dtype=bool)
        self._beyond[n_classes:] = True

    @property
    def n_clusters(self) -> int:
        return self.n_classes + self.extra_clusters

    def frame_matrix(self, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The confusion matrix of one frame (not added to the total)."""
        preds = np.asarray(preds)
        labels = np.asarray(labels)
        if preds.shape != labels.shape:
            raise ValueError(f"predictions {preds.shape} and labels {labels.shape} differ in "
                             "shape")
        preds = preds.reshape(-1).astype(np.int64)
        labels = labels.reshape(-1).astype(np.int64)
        keep = (labels >= 0) & (labels < self.n_classes)
        preds, labels = preds[keep], labels[keep]
        bad = preds[(preds < 0) | (preds >= self.n_clusters)]
        if bad.size:
            raise ValueError(f"prediction {int(bad[0])} is outside the {self.n_clusters} clusters "
                             f"being scored ({self.n_classes} classes + {self.extra_clusters} "
                             "extra)")
        counts = np.bincount(preds * self.n_classes + labels,
                             minlength=self.n_clusters * self.n_classes)
        return counts.reshape(self.n_clusters, self.n_classes)

    def update(self, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Add one frame; returns that frame's matrix (for scores over time)."""
        frame = self.frame_matrix(preds, labels)
        self.matrix += frame
        return frame

    def scores(self, paper_compatible: bool = False) -> Scores:
        conf = np.where(self._beyond, 0, self.matrix) if paper_compatible else self.matrix
        assignment = hungarian_match(conf)
        if paper_compatible and self.extra_clusters:
            return _paper_extra_scores(conf, assignment)
        return scores_with_assignment(conf, assignment)


def scores_with_assignment(conf: np.ndarray, assignment: Sequence[int]) -> Scores:
    """Scores of ``conf[cluster, class]`` under a given cluster-per-class matching.

    Used with the whole-set assignment to score single frames or windows consistently.
    """
    conf = np.asarray(conf, dtype=np.int64)
    assignment = np.asarray(assignment, dtype=np.int64)
    classes = np.arange(conf.shape[1])
    tp = conf[assignment, classes].astype(np.float64)
    gt = conf.sum(axis=0).astype(np.float64)
    pred = conf.sum(axis=1)[assignment].astype(np.float64)
    return _scores(tp, gt, pred, float(conf.sum()), assignment)


def _scores(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray, total: float,
            assignment: np.ndarray) -> Scores:
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (gt + pred - tp)
    valid = iou[~np.isnan(iou)]
    miou = 100.0 * float(valid.mean()) if valid.size else math.nan
    accuracy = 100.0 * float(tp.sum()) / total if total else math.nan
    return Scores(miou=miou, accuracy=accuracy,
                  per_class_iou=tuple(100.0 * float(v) for v in iou),
                  assignment=tuple(int(a) for a in assignment), pixels=int(total))


def _paper_extra_scores(conf: np.ndarray, assignment: np.ndarray) -> Scores:
    """The official extra-cluster arithmetic: unmatched clusters form one extra row and class."""
    n = conf.shape[1]
    unmatched = np.setdiff1d(np.arange(conf.shape[0]), assignment)
    hist = np.zeros((n + 1, n + 1), dtype=np.int64)
    hist[:n, :n] = conf[assignment]
    hist[n, :n] = conf[unmatched].sum(axis=0)
    tp = np.diag(hist).astype(np.float64)
    gt = hist.sum(axis=0).astype(np.float64)
    pred = hist.sum(axis=1).astype(np.float64)
    scores = _scores(tp, gt, pred, float(hist.sum()), assignment)
    return Scores(miou=scores.miou, accuracy=scores.accuracy,
                  per_class_iou=scores.per_class_iou[:n], assignment=scores.assignment,
                  pixels=scores.pixels)


def unsupervised_scores(preds: np.ndarray | Iterable[np.ndarray],
                        labels: np.ndarray | Iterable[np.ndarray], n_classes: int,
                        extra_clusters: int = 0, paper_compatible: bool = False) -> Scores:
    """Score predictions against labels: one array each, or matching sequences of frames."""
    confusion = Confusion(n_classes, extra_clusters)
    if isinstance(preds, np.ndarray) and isinstance(labels, np.ndarray):
        confusion.update(preds, labels)
    else:
        preds, labels = list(preds), list(labels)
        if len(preds) != len(labels):
            raise ValueError(f"{len(preds)} prediction frames but {len(labels)} label frames")
        for p, t in zip(preds, labels, strict=True):
            confusion.update(p, t)
    return confusion.scores(paper_compatible=paper_compatible)
