"""Which images each training step sees: the epoch order and the KNN positives (docs/stego.md
§5, §7)."""

from __future__ import annotations

import numpy as np
import torch

from uwstego.training import distributed as ddp


class EpochSampler:
    """DistributedSampler's order with drop_last: epoch e is a permutation seeded by seed + e.

    Rank r takes every world-th index of the first ``world * per_rank`` entries, cut into
    batches; incomplete batches are dropped so every step sees ``batch_size`` images.
    """

    def __init__(self, n: int, batch_size: int, seed: int, info: ddp.DistInfo) -> None:
        self.n, self.batch_size, self.seed, self.info = n, batch_size, seed, info
        self.per_rank = n // info.world_size
        self.batches_per_epoch = self.per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"{n} images cannot fill a batch of {batch_size} on each of "
                             f"{info.world_size} process(es): lower --batch-size or add data")
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def epoch_of(self, step: int) -> int:
        return step // self.batches_per_epoch

    def batch(self, step: int) -> np.ndarray:
        """Indices of the batch for 0-based ``step`` on this rank."""
        epoch, b = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=g).numpy()
            w = self.info.world_size
            self._order = perm[self.info.rank:self.per_rank * w:w]
            self._epoch = epoch
        return self._order[b * self.batch_size:(b + 1) * self.batch_size]


def draw_positives(knn: np.ndarray, anchors: np.ndarray, num_neighbors: int,
                   generator: torch.Generator) -> np.ndarray:
    """For each anchor, a neighbour drawn uniformly from ranks 1..num_neighbors (0 is itself)."""
    ranks = torch.randint(1, num_neighbors + 1, (len(anchors),), generator=generator).numpy()
    return knn[anchors, ranks]


def check_knn(knn: np.ndarray | torch.Tensor, n: int, num_neighbors: int) -> np.ndarray:
    knn = knn.cpu().numpy() if isinstance(knn, torch.Tensor) else np.asarray(knn)
    if knn.ndim != 2 or knn.shape[0] != n:
        raise ValueError(f"KNN table has shape {knn.shape}, expected [{n}, k] for {n} images")
    if knn.shape[1] <= num_neighbors:
        raise ValueError(f"KNN table keeps {knn.shape[1]} neighbours (rank 0 = self), but "
                         f"positives are drawn from ranks 1..{num_neighbors}")
    if knn.min() < 0 or knn.max() >= n:
        raise ValueError("KNN table holds indices outside the feature cache")
    return knn.astype(np.int64)
