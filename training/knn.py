"""KNN positives (STEGO.md section 5): cosine top-k over image descriptors, in bounded memory.

The similarity matrix is never formed: queries and database are both taken ``chunk`` rows at a
time and a running top-k is merged, so memory is ``O(chunk^2 + N k)`` and 100k images fit.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Cosines lie in [-1, 1]: the item itself is lifted above every other, excluded neighbours are
# pushed below every other, so both keep a defined rank instead of leaving holes.
_SELF_SCORE = 3.0
_EXCLUDED_SHIFT = -4.0


def compute_knn(descriptors: np.ndarray | torch.Tensor, k: int = 30, chunk: int = 4096, *,
                exclude_same_sequence: int | None = None, groups: np.ndarray | None = None,
                positions: np.ndarray | None = None,
                device: str | torch.device = "cpu") -> np.ndarray:
    """Indices ``[N, k]`` (int64) of each item's nearest neighbours by cosine; rank 0 is itself.

    ``exclude_same_sequence`` (opt-in, our addition to STEGO): a window ``W`` in frames. Items
    of the same ``groups`` entry whose ``positions`` differ by at most ``W`` (consecutive video
    frames; ``W = 0``: the other crops of the same frame) rank after all other items, so they
    are used only when nothing else is left. :meth:`FeatureCache.sequences` gives both arrays.
    ``k`` larger than ``N`` is reduced to ``N`` with a warning.
    """
    x = torch.as_tensor(np.asarray(descriptors) if not isinstance(descriptors, torch.Tensor)
                        else descriptors).to(device=device, dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"descriptors must be a non-empty [N, C] array, got {tuple(x.shape)}")
    n = x.shape[0]
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    if k > n:
        logger.warning("asked for %d neighbours of %d items; returning %d", k, n, n)
        k = n
    exclude = exclude_same_sequence is not None
    if exclude:
        if exclude_same_sequence < 0:
            raise ValueError(f"exclusion window must be >= 0 frames, got {exclude_same_sequence}")
        if groups is None or positions is None or len(groups) != n or len(positions) != n:
            raise ValueError("exclude_same_sequence needs groups and positions, one per item")
        g = torch.as_tensor(np.asarray(groups, dtype=np.int64), device=device)
        p = torch.as_tensor(np.asarray(positions, dtype=np.int64), device=device)
    x = F.normalize(x, dim=1)
    out = np.empty((n, k), dtype=np.int64)
    for q0 in range(0, n, chunk):
        q = x[q0:q0 + chunk]
        rows = torch.arange(q0, q0 + len(q), device=device)
        best_v = torch.full((len(q), k), -torch.inf, device=device)
        best_i = torch.zeros((len(q), k), dtype=torch.int64, device=device)
        for d0 in range(0, n, chunk):
            sims = q @ x[d0:d0 + chunk].T
            cols = torch.arange(d0, d0 + sims.shape[1], device=device)
            if exclude:
                near = (g[rows, None] == g[None, cols]) & (
                    (p[rows, None] - p[None, cols]).abs() <= exclude_same_sequence)
                sims = torch.where(near, sims + _EXCLUDED_SHIFT, sims)
            sims = torch.where(rows[:, None] == cols[None, :], torch.full_like(sims, _SELF_SCORE),
                               sims)
            merged_v = torch.cat([best_v, sims], dim=1)
            merged_i = torch.cat([best_i, cols.expand(len(q), -1)], dim=1)
            best_v, pick = merged_v.topk(k, dim=1)
            best_i = merged_i.gather(1, pick)
        out[q0:q0 + len(q)] = best_i.cpu().numpy()
    return out
