"""Novelty calibration from the training images, after the final k-means (see ``edge/novelty.py``).

The deploy graph's cosine is not the per-patch cosine: it upsamples the K score maps and the code
norm bilinearly and divides them (``export/fused.py``), which shrinks the cosine between unlike
neighbouring patches. Calibrating on per-patch cosines would call every boundary pixel novel, so
:func:`graph_confidences` computes the graph's quantity on the training images (upsampled by
the patch size, as from the network grid to network pixels) and :func:`calibrate_cosines`
takes each cluster's threshold (a low quantile) and knots (cosines at fixed tail probabilities).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from uwstego.novelty import DEFAULT_QUANTILE, KNOT_PROBS, NoveltyCalibration
from uwstego.training.clusters import unit_rows
from uwstego.training.features import FeatureCache
from uwstego.training.head import SegmentationHead

log = logging.getLogger(__name__)
# Must match export/fused.py's NORM_FLOOR (kept here to spare training an import of export).
NORM_FLOOR = 1e-6


def calibrate_cosines(cosines: np.ndarray, clusters: np.ndarray, num_clusters: int,
                      quantile: float = DEFAULT_QUANTILE) -> NoveltyCalibration:
    """Per-cluster tail of ``cosines [N]`` of pixels assigned to ``clusters [N]``.

    A cluster that received no pixel gets a threshold and knots of -1: its pixels are never
    unknown and read novelty 0, since nothing is known about them.
    """
    cosines = np.asarray(cosines, dtype=np.float64).reshape(-1)
    clusters = np.asarray(clusters).reshape(-1)
    if cosines.shape != clusters.shape:
        raise ValueError(f"{cosines.size} cosines for {clusters.size} cluster ids")
    thresholds, knots, counts = [], [], []
    for k in range(num_clusters):
        values = cosines[clusters == k]
        counts.append(int(values.size))
        if values.size == 0:
            log.warning("novelty calibration: cluster %d has no training pixel", k)
            thresholds.append(-1.0)
            knots.append([-1.0] * len(KNOT_PROBS))
            continue
        thresholds.append(float(np.quantile(values, quantile)))
        knots.append(np.quantile(values, KNOT_PROBS).tolist())
    calibration = NoveltyCalibration(quantile=quantile, thresholds=tuple(thresholds),
                                     knots=tuple(tuple(r) for r in knots), counts=tuple(counts))
    log.info("novelty calibration over %d pixels: thresholds at the %g quantile %s",
             cosines.size, quantile, ", ".join(f"{t:.3f}" for t in thresholds))
    return calibration


def calibrate(codes: np.ndarray, centroids: np.ndarray,
              quantile: float = DEFAULT_QUANTILE) -> NoveltyCalibration:
    """Calibration from code vectors ``[N, D]`` and their per-vector cosine (no upsampling)."""
    codes = np.asarray(codes, dtype=np.float32)
    cent = unit_rows(np.asarray(centroids, dtype=np.float32))
    if codes.ndim != 2 or codes.shape[1] != cent.shape[1]:
        raise ValueError(f"codes must be [N, {cent.shape[1]}], got {codes.shape}")
    cos = unit_rows(codes) @ cent.T
    assign = cos.argmax(axis=1)
    return calibrate_cosines(cos[np.arange(len(cos)), assign], assign, cent.shape[0], quantile)


def graph_confidences(head: SegmentationHead, cache: FeatureCache, centroids: np.ndarray,
                      device: torch.device | str, samples: int, seed: int, upsample: int,
                      batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(cosine, cluster)`` of ``samples // N`` pixels of every cached image, computed as the
    deploy graph does at ``upsample`` pixels per patch."""
    rng = np.random.default_rng(seed)
    n = len(cache)
    per_image = max(1, samples // n)
    weight = torch.from_numpy(unit_rows(np.asarray(centroids, dtype=np.float32)))
    weight = weight[:, :, None, None].to(device)
    k = weight.shape[0]
    cosines, clusters = [], []
    head.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            code = head(cache.feats(list(range(start, min(start + batch_size, n)))).to(device))
            norm = torch.linalg.vector_norm(code, dim=1, keepdim=True).clamp_min(NORM_FLOOR)
            maps = F.interpolate(torch.cat([F.conv2d(code, weight), norm], dim=1),
                                 scale_factor=upsample, mode="bilinear", align_corners=False)
            best, index = maps[:, :k].max(dim=1)
            conf = (best / maps[:, k]).flatten(1).cpu().numpy()
            index = index.flatten(1).cpu().numpy()
            for c, i in zip(conf, index, strict=True):
                take = rng.choice(c.size, size=min(per_image, c.size), replace=False)
                cosines.append(c[take])
                clusters.append(i[take])
    return np.concatenate(cosines), np.concatenate(clusters)
