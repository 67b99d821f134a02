"""The STEGO head: sizes, parameter count, and the dropout behaviour of docs/stego.md §3."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from uwstego.training.head import HeadConfig, SegmentationHead


def test_parameter_count_matches_stego_for_vit_s():
    head = SegmentationHead(HeadConfig(in_dim=384, code_dim=70))
    assert sum(p.numel() for p in head.parameters()) == 201_740
    assert sum(p.numel() for p in head.lin.parameters()) == 26_950
    assert sum(p.numel() for p in SegmentationHead(HeadConfig(768)).parameters()) == 698_252


def test_eval_forward_is_linear_plus_nonlinear_branch():
    torch.manual_seed(0)
    head = SegmentationHead(HeadConfig(in_dim=16, code_dim=5)).eval()
    f = torch.randn(2, 16, 3, 4)
    out = head(f)
    assert out.shape == (2, 5, 3, 4)
    torch.testing.assert_close(out, head.lin(f) + head.nl(f))
    torch.testing.assert_close(head.signal(f), f)


def test_train_forward_draws_independent_channel_masks():
    torch.manual_seed(0)
    c = 64
    head = SegmentationHead(HeadConfig(in_dim=c, code_dim=4, dropout=0.5)).train()
    f = torch.ones(1, c, 2, 2)
    s1, s2 = head.signal(f), head.signal(f)
    # Whole channels are dropped (constant over space) and survivors scaled by 1 / (1 - p).
    for s in (s1, s2):
        assert set(s.unique().tolist()) <= {0.0, 2.0}
        assert bool((s == s[:, :, :1, :1]).all())
    assert not torch.equal(s1, s2)
    # The branches see different masks: the output is not lin(m) + nl(m) for any single mask.
    torch.manual_seed(1)
    out = head(f)
    torch.manual_seed(1)
    m1 = head.drop(f)
    m2 = head.drop(f)
    torch.testing.assert_close(out, head.lin(m1) + head.nl(m2))
    assert not torch.allclose(out, head.lin(m1) + head.nl(m1))


def test_config_round_trip_and_validation():
    cfg = HeadConfig(in_dim=384, code_dim=100, dropout=0.2)
    assert HeadConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="dropout"):
        HeadConfig(in_dim=8, dropout=1.0)
    with pytest.raises(ValueError, match="positive"):
        HeadConfig(in_dim=0)
