"""Novelty calibration: how far a pixel's cosine falls into its cluster's tail of training codes.

Training (``training/calibration.py``) records, for every cluster, the cosine to the centroid at
fixed tail probabilities ``KNOT_PROBS`` (0 = the least similar training code, 0.5 = the median)
over the codes that k-means assigned to it, plus a threshold at a chosen quantile (default the
1st percentile). A pixel of cluster ``k`` with cosine ``c`` has tail probability ``p = F_k(c)``
(the empirical distribution, linear between knots) and

    novelty = clip(1 - 2 p, 0, 1)

0 for a cosine at or above the cluster's median (typical), 1 at or below the least similar
training code (beyond every training pixel). A pixel is *unknown* when ``c`` is below its
cluster's threshold. The fused graph computes the same map (``export/fused.py``); this module is
the numpy definition the graph is checked against and what the bundle stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# 17 knots: tail probabilities 0, 1/32, ..., 1/2 (the novelty falls by 1/16 from knot to knot).
KNOT_COUNT = 17
KNOT_PROBS = tuple(float(p) for p in np.linspace(0.0, 0.5, KNOT_COUNT))
DEFAULT_QUANTILE = 0.01
# Cosine gap below which two knots count as one step (keeps the slope finite, fp16 included).
MIN_KNOT_GAP = 1e-4


@dataclass(frozen=True)
class NoveltyCalibration:
    """Per cluster: the unknown threshold (a cosine) and the cosines at :data:`KNOT_PROBS`."""

    quantile: float
    thresholds: tuple[float, ...]  # [K]
    knots: tuple[tuple[float, ...], ...]  # [K][KNOT_COUNT], non-decreasing
    counts: tuple[int, ...]  # [K] training codes per cluster

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile < 0.5:
            raise ValueError(f"novelty quantile must be in (0, 0.5), got {self.quantile}")
        k = len(self.thresholds)
        if len(self.knots) != k or len(self.counts) != k:
            raise ValueError(f"calibration of {k} thresholds has {len(self.knots)} knot rows "
                             f"and {len(self.counts)} counts")
        knots = np.asarray(self.knots, dtype=np.float64)
        if knots.shape != (k, KNOT_COUNT):
            raise ValueError(f"calibration knots must be [{k}, {KNOT_COUNT}], got {knots.shape}")
        if not np.isfinite(knots).all() or (np.diff(knots, axis=1) < 0).any():
            raise ValueError("calibration knots must be finite and non-decreasing per cluster")
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        object.__setattr__(self, "knots", tuple(tuple(float(x) for x in row) for row in knots))
        object.__setattr__(self, "counts", tuple(int(c) for c in self.counts))

    @property
    def num_clusters(self) -> int:
        return len(self.thresholds)

    def knot_array(self) -> np.ndarray:
        return np.asarray(self.knots, dtype=np.float32)

    def threshold_array(self) -> np.ndarray:
        return np.asarray(self.thresholds, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "knot_probs": list(KNOT_PROBS),
                "thresholds": list(self.thresholds), "knots": [list(r) for r in self.knots],
                "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoveltyCalibration:
        probs = data.get("knot_probs", list(KNOT_PROBS))
        if not np.allclose(probs, KNOT_PROBS):
            raise ValueError(f"calibration knots at tail probabilities {probs}; this uwstego "
                             f"reads {list(KNOT_PROBS)}")
        return cls(quantile=float(data["quantile"]),
                   thresholds=tuple(data["thresholds"]),
                   knots=tuple(tuple(r) for r in data["knots"]),
                   counts=tuple(data["counts"]))


def segment_slopes(knots: np.ndarray) -> np.ndarray:
    """``1 / (x_{j+1} - x_j)`` per cluster and segment, gaps floored at :data:`MIN_KNOT_GAP`."""
    return (1.0 / np.maximum(np.diff(knots, axis=1), MIN_KNOT_GAP)).astype(np.float32)


def novelty_map(confidence: np.ndarray, labels: np.ndarray,
                calibration: NoveltyCalibration) -> np.ndarray:
    """Per-pixel novelty in [0, 1] of cosines ``confidence`` assigned to clusters ``labels``.

    Written as the graph computes it: the sum over the knot segments of how much of each segment
    lies above the cosine, each segment worth ``1 / (KNOT_COUNT - 1)``.
    """
    knots = calibration.knot_array()
    hi, slope = knots[:, 1:], segment_slopes(knots)
    lab = np.asarray(labels).astype(np.intp)
    c = np.asarray(confidence, dtype=np.float32)[..., None]
    parts = np.clip((hi[lab] - c) * slope[lab], 0.0, 1.0)
    return (parts.sum(axis=-1) / np.float32(KNOT_COUNT - 1)).astype(np.float32)


def unknown_mask(confidence: np.ndarray, labels: np.ndarray,
                 calibration: NoveltyCalibration) -> np.ndarray:
    """Pixels whose cosine is below their cluster's threshold."""
    return np.asarray(confidence) < calibration.threshold_array()[np.asarray(labels).astype(
        np.intp)]


def describe(calibration: NoveltyCalibration, names: Sequence[str]) -> list[str]:
    """One line per cluster: training codes, threshold, the cosines at tail 0, 1/32 and 1/2."""
    lines = [f"novelty calibration: unknown below the {calibration.quantile:g} quantile of each "
             "cluster's cosine to its centroid over the training pixels"]
    for name, count, thr, row in zip(names, calibration.counts, calibration.thresholds,
                                     calibration.knots, strict=True):
        lines.append(f"  {name:<16} {count:>8} codes  threshold {thr:.4f}  "
                     f"min {row[0]:.4f}  p3 {row[1]:.4f}  median {row[-1]:.4f}")
    return lines


def novelty_mono8(novelty: np.ndarray) -> np.ndarray:
    """Novelty [0, 1] -> uint8 0-255 (the node's ``~/novelty`` image and the replay's pictures)."""
    return np.rint(np.clip(novelty, 0.0, 1.0) * 255.0).astype(np.uint8)
