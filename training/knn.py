"""KNN positives (docs/stego.md §5): cosine top-k over image descriptors, in bounded memory.

The similarity matrix is never formed: the queries are taken in blocks of at most ``chunk``
rows, the database ``chunk`` rows at a time, and a running top-k is merged, so memory is
``O(chunk^2 + N k)`` and 100k images fit. The query blocks lie on a grid that depends on ``N``
and ``chunk`` only, so a block computes the same numbers whichever process takes it: under
torch.distributed (:func:`compute_knn_ranks`) each rank takes every ``world_size``-th block
and the gathered table equals the single-process one bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uwstego.training import distributed as ddp

logger = logging.getLogger(__name__)

# Cosines lie in [-1, 1]: the item itself is lifted above every other, excluded neighbours are
# pushed below every other, so both keep a defined rank instead of leaving holes.
_SELF_SCORE = 3.0
_EXCLUDED_SHIFT = -4.0
# Query blocks per table: enough to share among the ranks of a node or two.
_BLOCKS = 64


def query_blocks(n: int, chunk: int) -> list[range]:
    """The fixed grid of query rows: about ``_BLOCKS`` blocks of at most ``chunk`` rows."""
    size = min(chunk, max(1, -(-n // _BLOCKS)))
    return [range(q0, min(q0 + size, n)) for q0 in range(0, n, size)]


def compute_knn(descriptors: np.ndarray | torch.Tensor, k: int = 30, chunk: int = 4096, *,
                exclude_same_sequence: int | None = None, groups: np.ndarray | None = None,
                positions: np.ndarray | None = None, device: str | torch.device = "cpu",
                blocks: Sequence[range] | None = None) -> np.ndarray:
    """Indices ``[N, k]`` (int64) of each item's nearest neighbours by cosine; rank 0 is itself.

    ``exclude_same_sequence`` (opt-in, our addition to STEGO): a window ``W`` in frames. Items
    of the same ``groups`` entry whose ``positions`` differ by at most ``W`` (consecutive video
    frames; ``W = 0``: the other crops of the same frame) rank after all other items, so they
    are used only when nothing else is left. :meth:`FeatureCache.sequences` gives both arrays.
    ``k`` larger than ``N`` is reduced to ``N`` with a warning. ``blocks``: only these entries
    of :func:`query_blocks`, their rows concatenated in order (default: all, i.e. ``[N, k]``).
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
    blocks = query_blocks(n, chunk) if blocks is None else blocks
    out = np.empty((sum(len(b) for b in blocks), k), dtype=np.int64)
    row0 = 0
    for block in blocks:
        q = x[block.start:block.stop]
        rows = torch.arange(block.start, block.stop, device=device)
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
        out[row0:row0 + len(q)] = best_i.cpu().numpy()
        row0 += len(q)
    return out


def compute_knn_ranks(descriptors: np.ndarray, k: int = 30, chunk: int = 4096,
                      **kwargs) -> np.ndarray:
    """:func:`compute_knn` shared among the torch.distributed ranks; every rank gets ``[N, k]``.

    Each rank computes every ``world_size``-th query block on its own device (``device`` in
    ``kwargs``) against all items; the blocks are gathered in grid order. One process: the
    same as :func:`compute_knn`.
    """
    info = ddp.dist_info()
    n = len(descriptors)
    grid = query_blocks(n, chunk)
    mine = grid[info.rank::info.world_size]
    part = compute_knn(descriptors, k, chunk, blocks=mine, **kwargs)
    if not info.active:
        return part
    parts = ddp.gather_objects(part)
    out = np.empty((n, parts[0].shape[1]), dtype=np.int64)
    for rank, rows in enumerate(parts):
        index = [i for block in grid[rank::info.world_size] for i in block]
        out[index] = rows
    return out
