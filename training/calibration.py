"""Novelty calibration from the training codes, after the final k-means (see ``edge/novelty.py``).

Every code is assigned to its nearest unit centroid, as the deploy graph does; each cluster's
cosines give its threshold (a low quantile) and its knots (cosines at fixed tail probabilities).
"""

from __future__ import annotations

import logging

import numpy as np

from edge.novelty import DEFAULT_QUANTILE, KNOT_PROBS, NoveltyCalibration
from training.clusters import unit_rows

log = logging.getLogger(__name__)


def calibrate(codes: np.ndarray, centroids: np.ndarray,
              quantile: float = DEFAULT_QUANTILE) -> NoveltyCalibration:
    """Per-cluster tail of the cosine to the centroid over ``codes [N, D]``.

    A cluster that received no code (k-means can leave one empty) gets a threshold and knots of
    -1: its pixels are never unknown and read novelty 0, since nothing is known about them.
    """
    codes = np.asarray(codes, dtype=np.float32)
    cent = unit_rows(np.asarray(centroids, dtype=np.float32))
    if codes.ndim != 2 or codes.shape[1] != cent.shape[1]:
        raise ValueError(f"codes must be [N, {cent.shape[1]}], got {codes.shape}")
    cos = unit_rows(codes) @ cent.T
    assign = cos.argmax(axis=1)
    best = cos[np.arange(len(cos)), assign]
    thresholds, knots, counts = [], [], []
    for k in range(cent.shape[0]):
        values = best[assign == k].astype(np.float64)
        counts.append(int(values.size))
        if values.size == 0:
            log.warning("novelty calibration: cluster %d has no training code", k)
            thresholds.append(-1.0)
            knots.append([-1.0] * len(KNOT_PROBS))
            continue
        thresholds.append(float(np.quantile(values, quantile)))
        knots.append(np.quantile(values, KNOT_PROBS).tolist())
    calibration = NoveltyCalibration(quantile=quantile, thresholds=tuple(thresholds),
                                     knots=tuple(tuple(r) for r in knots), counts=tuple(counts))
    log.info("novelty calibration over %d codes: thresholds at the %g quantile %s", len(codes),
             quantile, ", ".join(f"{t:.3f}" for t in thresholds))
    return calibration
