"""training.metrics is a tensor front to edge.scoring: same figures from tensors and arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from edge.scoring import unsupervised_scores as score_arrays
from training.metrics import unsupervised_scores


def test_tensor_batch_matches_hand_count():
    # Clusters are a relabelling of the classes except two pixels; 255 is ignored.
    labels = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    preds = torch.tensor([[2, 2, 0, 0], [1, 0, 1, 0]])
    s = unsupervised_scores(preds, labels, n_classes=3)
    # matched: class0->cluster2, class1->cluster0, class2->cluster1. tp = 2 + 3 + 1 of 7 pixels.
    assert s.accuracy == pytest.approx(100 * 6 / 7)
    # IoU: class0 2/2, class1 3/(3+4-3), class2 1/(2+1-1)
    assert s.per_class_iou == pytest.approx((100.0, 75.0, 50.0))
    assert s.miou == pytest.approx(75.0)
    assert s.assignment == (2, 0, 1)


def test_sequences_of_tensors_score_the_whole_set():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 4, size=(8, 8)) for _ in range(3)]
    preds = [(lab + 1) % 4 if i else rng.integers(0, 6, size=(8, 8))
             for i, lab in enumerate(labels)]
    from_tensors = unsupervised_scores([torch.from_numpy(p) for p in preds],
                                       [torch.from_numpy(t) for t in labels], 4,
                                       extra_clusters=2)
    assert from_tensors == score_arrays(preds, labels, 4, extra_clusters=2)
    assert from_tensors.pixels == 3 * 64


def test_tensors_that_require_grad_are_accepted():
    preds = torch.tensor([0.0, 1.0, 1.0, 0.0], requires_grad=True)
    s = unsupervised_scores(preds, torch.tensor([1, 0, 0, 1]), 2)
    assert (s.miou, s.assignment) == (100.0, (1, 0))
