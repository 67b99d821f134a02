"""The torch-free STEGO scorer against hand-computed cases and a brute-force matching."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from uwstego.scoring import (
    Confusion,
    ScoringUnavailable,
    hungarian_match,
    scores_with_assignment,
    unsupervised_scores,
)


def test_permuted_perfect_prediction_scores_100() -> None:
    labels = np.array([[0, 0, 1, 1], [2, 2, 2, 2]], dtype=np.uint8)
    cluster_of_class = np.array([2, 0, 1])
    s = unsupervised_scores(cluster_of_class[labels], labels, n_classes=3)
    assert s.miou == pytest.approx(100.0)
    assert s.accuracy == pytest.approx(100.0)
    assert s.assignment == (2, 0, 1)
    assert s.pixels == 8


def test_hand_computed_two_classes() -> None:
    # conf[pred, label] = [[2, 1], [1, 2]]: identity match, IoU = 2 / (3 + 3 - 2) per class.
    labels = np.array([0, 0, 0, 1, 1, 1])
    preds = np.array([0, 0, 1, 1, 1, 0])
    s = unsupervised_scores(preds, labels, n_classes=2)
    assert s.per_class_iou == pytest.approx((50.0, 50.0))
    assert s.miou == pytest.approx(50.0)
    assert s.accuracy == pytest.approx(400.0 / 6.0)


def test_ignore_label_and_out_of_range_labels_are_not_scored() -> None:
    labels = np.array([0, 0, 1, 1, 255, 255, 7])
    preds = np.array([0, 0, 1, 1, 0, 1, 1])
    s = unsupervised_scores(preds, labels, n_classes=2)
    assert s.pixels == 4
    assert s.miou == pytest.approx(100.0)


def test_absent_class_is_nan_only_when_its_cluster_never_fires() -> None:
    labels = np.array([0, 0, 1, 1])
    silent = unsupervised_scores(np.array([0, 0, 1, 1]), labels, n_classes=3)
    assert math.isnan(silent.per_class_iou[2])
    assert silent.miou == pytest.approx(100.0)  # the NaN is skipped, not averaged as 0
    assert silent.to_dict()["per_class_iou"][2] is None

    # Cluster 2 fires on a class-0 pixel: whichever of the tied clusters class 0 gets, the
    # absent class scores IoU 0 and is averaged in: (0.5 + 1 + 0) / 3.
    firing = unsupervised_scores(np.array([0, 2, 1, 1]), labels, n_classes=3)
    assert firing.miou == pytest.approx(50.0)
    assert firing.accuracy == pytest.approx(75.0)
    assert sorted(firing.per_class_iou) == pytest.approx([0.0, 50.0, 100.0])


def test_extra_clusters_primary_and_paper_compatible() -> None:
    labels = np.array([0, 0, 0, 0, 0, 1])
    preds = np.array([0, 0, 0, 1, 1, 2])
    # Every prediction counts: conf rows [3,0], [2,0], [0,1], [0,0]; class 0 -> cluster 0,
    # class 1 -> cluster 2: IoU 3/5 and 1/1.
    primary = unsupervised_scores(preds, labels, n_classes=2, extra_clusters=2)
    assert primary.assignment == (0, 2)
    assert primary.miou == pytest.approx(80.0)
    assert primary.accuracy == pytest.approx(400.0 / 6.0)
    # Official quirk: the pixel predicted into cluster 2 (>= n) is dropped, the unmatched
    # cluster's pixels form an extra row averaged in; every tie-break gives (0.6 + 0) / 2.
    paper = unsupervised_scores(preds, labels, n_classes=2, extra_clusters=2,
                                paper_compatible=True)
    assert paper.miou == pytest.approx(30.0)
    assert paper.accuracy == pytest.approx(60.0)
    assert paper.pixels == 5


def test_whole_set_matching_differs_from_per_frame_average() -> None:
    # Frame 1 alone matches cluster 1 to class 0, frame 2 alone matches cluster 0 to class 0;
    # the whole-set matrix decides once for both frames.
    labels = [np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 1, 1, 1])]
    preds = [np.array([1, 1, 0, 0]), np.array([0, 0, 0, 1, 1, 1, 1, 1])]
    whole = unsupervised_scores(preds, labels, n_classes=2)
    assert whole.assignment == (0, 1)
    assert whole.accuracy == pytest.approx(100.0 * 8 / 12)
    confusion = Confusion(2)
    frames = [confusion.update(p, t) for p, t in zip(preds, labels, strict=True)]
    np.testing.assert_array_equal(confusion.matrix, sum(frames))
    first = scores_with_assignment(frames[0], whole.assignment)
    assert first.accuracy == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_is_optimal_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, extra = 3, 1
    labels = rng.integers(0, n, size=400)
    preds = np.where(rng.random(400) < 0.6, (labels + seed) % (n + extra),
                     rng.integers(0, n + extra, size=400))
    confusion = Confusion(n, extra)
    confusion.update(preds, labels)
    best = max(sum(confusion.matrix[c, i] for i, c in enumerate(perm))
               for perm in itertools.permutations(range(n + extra), n))
    s = confusion.scores()
    assert s.accuracy == pytest.approx(100.0 * best / 400)
    assert len(set(s.assignment)) == n
    assert sorted(hungarian_match(confusion.matrix)) == sorted(s.assignment)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="outside the 2 clusters"):
        unsupervised_scores(np.array([0, 5]), np.array([0, 1]), n_classes=2)
    with pytest.raises(ValueError, match="differ in shape"):
        unsupervised_scores(np.zeros((2, 2)), np.zeros((2, 3)), n_classes=2)
    with pytest.raises(ValueError, match="2 prediction frames but 1"):
        unsupervised_scores([np.zeros(2)] * 2, [np.zeros(2)], n_classes=2)


def test_missing_scipy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ScoringUnavailable, match="needs scipy"):
        hungarian_match(np.eye(2, dtype=np.int64))


def test_importing_the_scorer_loads_neither_scipy_nor_torch() -> None:
    code = ("import sys, uwstego.scoring; "
            "print(sorted(m for m in ('scipy', 'torch', 'training') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
