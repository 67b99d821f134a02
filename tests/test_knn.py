"""KNN positives: chunked top-k against a brute-force reference, self first, opt-in exclusion."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from uwstego.training.knn import compute_knn, query_blocks


def _brute(desc: np.ndarray, k: int, penalty: np.ndarray | None = None) -> np.ndarray:
    x = desc / np.linalg.norm(desc, axis=1, keepdims=True)
    sims = x @ x.T
    if penalty is not None:
        sims = np.where(penalty, sims - 4.0, sims)
    np.fill_diagonal(sims, np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_chunked_topk_equals_brute_force() -> None:
    desc = np.random.default_rng(0).normal(size=(301, 16)).astype(np.float32)
    got = compute_knn(desc, k=30, chunk=64)
    assert got.shape == (301, 30) and got.dtype == np.int64
    np.testing.assert_array_equal(got, _brute(desc, 30))
    np.testing.assert_array_equal(got[:, 0], np.arange(301))
    np.testing.assert_array_equal(compute_knn(torch.from_numpy(desc), k=30, chunk=1000), got)


def test_item_itself_ranks_first_even_among_duplicates() -> None:
    desc = np.repeat(np.eye(3, 8, dtype=np.float32), 4, axis=0)  # 4 identical copies each
    got = compute_knn(desc, k=4, chunk=5)
    np.testing.assert_array_equal(got[:, 0], np.arange(12))
    for i, row in enumerate(got):
        assert set(row) == set(range(i // 4 * 4, i // 4 * 4 + 4))


def test_same_sequence_window_exclusion() -> None:
    rng = np.random.default_rng(1)
    # A slowly drifting video (consecutive frames are near-duplicates) plus unrelated stills.
    video = np.cumsum(rng.normal(scale=0.05, size=(40, 12)), axis=0) + rng.normal(size=12)
    desc = np.concatenate([video, rng.normal(size=(40, 12))]).astype(np.float32)
    groups = np.r_[np.zeros(40, int), np.arange(1, 41)]
    positions = np.r_[np.arange(40), np.zeros(40, int)]
    window = 5
    near = (groups[:, None] == groups[None, :]) & (
        np.abs(positions[:, None] - positions[None, :]) <= window)
    got = compute_knn(desc, k=8, chunk=16, exclude_same_sequence=window, groups=groups,
                      positions=positions)
    np.testing.assert_array_equal(got, _brute(desc, 8, near))
    plain = compute_knn(desc, k=8, chunk=16)
    assert np.abs(plain[:40, 1:] - np.arange(40)[:, None]).min() <= window  # the problem
    assert (np.abs(got[:40, 1:] - np.arange(40)[:, None]) > window).all()   # solved
    with pytest.raises(ValueError, match="needs groups and positions"):
        compute_knn(desc, exclude_same_sequence=2)


def test_small_sets_and_bad_input(caplog) -> None:
    desc = np.random.default_rng(2).normal(size=(5, 4))
    with caplog.at_level(logging.WARNING):
        got = compute_knn(desc, k=30)
    assert got.shape == (5, 5) and "returning 5" in caplog.text
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        compute_knn(np.zeros(4), k=2)


def test_query_blocks_computed_apart_give_the_whole_table() -> None:
    desc = np.random.default_rng(3).normal(size=(150, 8)).astype(np.float32)
    grid = query_blocks(150, 16)
    assert [len(b) for b in grid[:2]] == [3, 3] and grid[-1].stop == 150  # ~64 blocks of 3
    # Every rank takes every second block: together exactly the one-process table.
    parts = [compute_knn(desc, k=5, chunk=16, blocks=grid[r::2]) for r in (0, 1)]
    rows = [[i for b in grid[r::2] for i in b] for r in (0, 1)]
    table = np.empty((150, 5), dtype=np.int64)
    for r in (0, 1):
        table[rows[r]] = parts[r]
    np.testing.assert_array_equal(table, compute_knn(desc, k=5, chunk=16))
    np.testing.assert_array_equal(table, _brute(desc, 5))
