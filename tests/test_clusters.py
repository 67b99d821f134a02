"""The online cluster probe (STEGO's ClusterLookup) and the offline spherical k-means."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from uwstego.training.clusters import ClusterProbe, cosine_scores, spherical_kmeans


def _three_directions(n_per: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    axes = np.eye(6, dtype=np.float32)[:3]
    labels = np.repeat(np.arange(3), n_per)
    # Same directions at very different lengths: only a spherical clustering groups them.
    scale = rng.uniform(0.1, 20.0, size=(labels.size, 1))
    codes = (axes[labels] + 0.15 * rng.normal(size=(labels.size, 6))) * scale
    return codes.astype(np.float32), labels


def test_probe_loss_is_minus_mean_max_cosine():
    probe = ClusterProbe(dim=4, n_clusters=3)
    code = torch.randn(2, 4, 5, 5)
    loss, probs = probe(code)
    loss = loss.detach()
    scores = cosine_scores(code, probe.clusters).detach()
    assert float(loss) == pytest.approx(-float(scores.max(dim=1).values.mean()), abs=1e-6)
    assert probs.shape == (2, 3, 5, 5)
    assert torch.equal(probs.sum(1), torch.ones(2, 5, 5))
    soft_loss, soft = probe(code, alpha=2.0)
    soft, soft_loss = soft.detach(), soft_loss.detach()
    torch.testing.assert_close(soft, torch.softmax(2.0 * scores, dim=1))
    assert float(soft_loss) > float(loss)  # the soft average never beats the hard max


def test_probe_learns_the_directions_by_gradient_descent():
    torch.manual_seed(0)
    codes, labels = _three_directions()
    code = torch.from_numpy(codes).T.reshape(1, 6, 1, -1)
    probe = ClusterProbe(dim=6, n_clusters=3)
    opt = torch.optim.Adam(probe.parameters(), lr=5e-2)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss, _ = probe(code)
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < first
    assign = cosine_scores(code, probe.clusters.detach()).argmax(1).flatten().numpy()
    # Each true direction ends up (almost entirely) in one cluster.
    purity = sum(np.bincount(assign[labels == c]).max() for c in range(3)) / labels.size
    assert purity > 0.9


def test_spherical_kmeans_groups_directions_not_lengths():
    codes, labels = _three_directions()
    cent = spherical_kmeans(codes, 3, seed=0, batch_size=128)
    assert cent.shape == (3, 6) and cent.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1.0, atol=1e-6)
    assign = cosine_scores(torch.from_numpy(codes).T.reshape(1, 6, 1, -1),
                           torch.from_numpy(cent)).argmax(1).flatten().numpy()
    assert len(set(zip(labels.tolist(), assign.tolist(), strict=True))) == 3  # one-to-one
    again = spherical_kmeans(torch.from_numpy(codes), 3, seed=0, batch_size=128)
    np.testing.assert_array_equal(cent, again)


def test_spherical_kmeans_refuses_bad_input():
    with pytest.raises(ValueError, match="cannot make 5 clusters"):
        spherical_kmeans(np.ones((3, 2)), 5)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        spherical_kmeans(np.ones(3), 1)
    with pytest.raises(ValueError, match="NaN"):
        spherical_kmeans(np.full((4, 2), np.nan), 2)
