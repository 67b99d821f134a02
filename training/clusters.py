"""Clustering the code: STEGO's online cluster probe and the offline spherical k-means we ship.

Both assign a pixel to the centroid of highest cosine similarity (docs/stego.md §7, §9).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def cosine_scores(code: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``[B,D,H,W]`` code, ``[K,D]`` centroids -> ``[B,K,H,W]`` cosine similarities."""
    return torch.einsum("bchw,kc->bkhw", F.normalize(code, dim=1), F.normalize(centroids, dim=1))


class ClusterProbe(nn.Module):
    """STEGO's ``ClusterLookup``: online spherical k-means by gradient descent.

    Train it on the **detached** code with ``alpha=None`` (hard one-hot assignment); its loss is
    ``-mean max_k cos(z, M_k)``. ``alpha`` gives the soft form ``softmax(alpha * cos)``.
    """

    def __init__(self, dim: int, n_clusters: int) -> None:
        super().__init__()
        if dim < 1 or n_clusters < 1:
            raise ValueError(f"probe needs dim >= 1 and n_clusters >= 1, got {dim}, {n_clusters}")
        self.clusters = nn.Parameter(torch.randn(n_clusters, dim))

    def forward(self, code: torch.Tensor,
                alpha: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, cluster_probs [B,K,H,W])``."""
        scores = cosine_scores(code, self.clusters)
        if alpha is None:
            probs = F.one_hot(scores.argmax(dim=1), self.clusters.shape[0])
            probs = probs.permute(0, 3, 1, 2).to(scores.dtype)
        else:
            probs = torch.softmax(scores * alpha, dim=1)
        loss = -(probs * scores).sum(1).mean()
        return loss, probs

    def unit_centroids(self) -> np.ndarray:
        return F.normalize(self.clusters.detach(), dim=1).cpu().numpy().astype(np.float32)


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def spherical_kmeans(codes: np.ndarray | torch.Tensor, k: int, seed: int = 0,
                     batch_size: int = 4096, n_init: int = 3) -> np.ndarray:
    """Unit centroids ``[k, D]`` (float32) of L2-normalised codes ``[N, D]``.

    scikit-learn's MiniBatchKMeans (k-means++ init) on unit vectors, then the centroids are
    normalised again: on the sphere the nearest centroid by cosine is the nearest by distance.
    """
    from sklearn.cluster import MiniBatchKMeans

    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, D], got shape {codes.shape}")
    if not 1 <= k <= codes.shape[0]:
        raise ValueError(f"cannot make {k} clusters from {codes.shape[0]} code vectors")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or inf: the head diverged")
    x = unit_rows(codes)
    km = MiniBatchKMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed,
                         batch_size=min(batch_size, x.shape[0]))
    km.fit(x)
    log.info("spherical k-means: %d clusters from %d vectors, inertia %.4g", k, x.shape[0],
             km.inertia_)
    return unit_rows(km.cluster_centers_)
