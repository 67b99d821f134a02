"""STEGO's unsupervised scores for torch tensors: a thin front to :mod:`edge.scoring`.

The scorer itself (whole-set confusion matrix, Hungarian matching, masking, extra clusters) lives
in ``edge.scoring`` so that training and the vehicle-side replay report identical figures.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from edge.scoring import Scores
from edge.scoring import unsupervised_scores as _score_arrays

ArrayLike = np.ndarray | torch.Tensor


def as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def unsupervised_scores(preds: ArrayLike | Iterable[ArrayLike],
                        labels: ArrayLike | Iterable[ArrayLike], n_classes: int,
                        extra_clusters: int = 0, paper_compatible: bool = False) -> Scores:
    """mIoU and accuracy (percent) with Hungarian matching over the whole set.

    ``preds``/``labels`` are one array or tensor each (any shape, e.g. ``[N,H,W]``) or matching
    sequences of per-frame arrays. Labels outside ``0..n_classes-1`` are ignored.
    """
    if isinstance(preds, (np.ndarray, torch.Tensor)) and isinstance(labels,
                                                                   (np.ndarray, torch.Tensor)):
        return _score_arrays(as_numpy(preds), as_numpy(labels), n_classes, extra_clusters,
                             paper_compatible)
    return _score_arrays([as_numpy(p) for p in preds], [as_numpy(t) for t in labels], n_classes,
                         extra_clusters, paper_compatible)
