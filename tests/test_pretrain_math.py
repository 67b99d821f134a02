"""DINO's formulas (docs/pretrain.md): schedules, loss, centring, EMA, clipping, head and crops,
each checked against the equation written out independently of the implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from uwstego.training.backbones import backbone_config
from uwstego.training.backbones.vit import DinoViT
from uwstego.training.pretrain.augment import augment, multi_crop_batch, policies, resized_crop_box
from uwstego.training.pretrain.head import DinoHead, WeightNormLinear
from uwstego.training.pretrain.loss import DinoLoss
from uwstego.training.pretrain.monitor import Entropies, collapse, teacher_entropies
from uwstego.training.pretrain.network import MultiCropNet, add_drop_path
from uwstego.training.pretrain.optim import (
    cancel_last_layer_gradients,
    clip_gradients,
    ema_update,
    param_groups,
)
from uwstego.training.pretrain.probe import patch_labels
from uwstego.training.pretrain.schedules import cosine_schedule, teacher_temperature


def test_cosine_schedule_follows_the_formula():
    s = cosine_schedule(1.0, 0.1, epochs=5, iters_per_epoch=4, warmup_epochs=1,
                        start_warmup=0.0)
    assert len(s) == 20
    np.testing.assert_allclose(s[:4], np.linspace(0.0, 1.0, 4))
    t = np.arange(16)
    np.testing.assert_allclose(s[4:], 0.1 + 0.45 * (1 + np.cos(np.pi * t / 16)))
    assert s[4] == pytest.approx(1.0) and s[-1] > 0.1
    # teacher momentum 0.996 -> 1, weight decay 0.04 -> 0.4, no warm-up
    m = cosine_schedule(0.996, 1.0, 3, 10)
    assert m[0] == pytest.approx(0.996) and np.all(np.diff(m) >= 0) and m[-1] < 1.0
    with pytest.raises(ValueError, match="warm-up"):
        cosine_schedule(1.0, 0.0, 2, 3, warmup_epochs=3)


def test_teacher_temperature_warms_up_linearly_then_stays():
    t = teacher_temperature(0.04, 0.07, warmup_epochs=4, epochs=10)
    np.testing.assert_allclose(t[:4], [0.04, 0.05, 0.06, 0.07])
    np.testing.assert_allclose(t[4:], 0.07)


def _naive_dino_loss(student, teacher, center, ncrops, tau_s, tau_t):
    b = teacher.shape[0] // 2
    total, pairs = 0.0, 0
    for i in range(2):
        t = teacher[i * b:(i + 1) * b] - center
        p_t = np.exp(t / tau_t) / np.exp(t / tau_t).sum(-1, keepdims=True)
        for v in range(ncrops):
            if v == i:
                continue
            s = student[v * b:(v + 1) * b] / tau_s
            log_p_s = s - np.log(np.exp(s).sum(-1, keepdims=True))
            total += (-(p_t * log_p_s).sum(-1)).mean()
            pairs += 1
    return total / pairs, pairs


def test_loss_is_the_cross_entropy_over_pairs_and_the_centre_is_an_ema():
    rng = np.random.default_rng(0)
    ncrops, b, k = 4, 3, 7
    student = rng.normal(size=(ncrops * b, k))
    teacher = rng.normal(size=(2 * b, k))
    loss_fn = DinoLoss(k, ncrops, np.array([0.05, 0.04]), student_temp=0.1,
                       center_momentum=0.9).double()
    centre0 = rng.normal(size=(1, k))
    loss_fn.center.copy_(torch.from_numpy(centre0))
    loss = loss_fn(torch.from_numpy(student), torch.from_numpy(teacher), epoch=1)
    expected, pairs = _naive_dino_loss(student, teacher, centre0, ncrops, 0.1, 0.04)
    assert pairs == 2 * ncrops - 2
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(loss_fn.center.numpy(),
                               0.9 * centre0 + 0.1 * teacher.mean(0, keepdims=True))
    assert set(loss_fn.state_dict()) == {"center"}


def test_loss_gradient_reaches_only_the_student():
    loss_fn = DinoLoss(5, 3, np.array([0.04]))
    s = torch.randn(6, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    loss_fn(s, t, epoch=0).backward()
    assert s.grad is not None and t.grad is None


def test_ema_follows_the_formula():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for p_t, p_0, p_s in zip(teacher.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(p_t, 0.9 * p_0 + 0.1 * p_s)


def test_gradients_are_clipped_per_tensor():
    model = torch.nn.Linear(4, 2)
    model.weight.grad = torch.full((2, 4), 3.0)   # norm 8.49: clipped to 3
    model.bias.grad = torch.tensor([1.0, 0.0])    # norm 1: unchanged
    norms = clip_gradients(model, 3.0)
    assert norms == pytest.approx([math.sqrt(72), 1.0])
    assert float(model.weight.grad.norm()) == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(model.bias.grad, torch.tensor([1.0, 0.0]))


def test_head_has_the_official_layout_and_weight_norm():
    head = DinoHead(16, 32, hidden_dim=24, bottleneck_dim=8)
    assert set(head.state_dict()) == {
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "mlp.4.weight",
        "mlp.4.bias", "last_layer.weight_g", "last_layer.weight_v"}
    assert not head.last_layer.weight_g.requires_grad
    torch.testing.assert_close(head.last_layer.weight_g, torch.ones(32, 1))
    layer = WeightNormLinear(8, 5)
    with torch.no_grad():
        layer.weight_g.mul_(2.0)
    w = layer.weight()
    torch.testing.assert_close(w.norm(dim=1), torch.full((5,), 2.0))
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), x @ w.T)


def test_last_layer_is_frozen_during_the_first_epochs_and_groups_skip_decay():
    net = MultiCropNet(DinoViT(backbone_config("tiny_vit8")),
                       DinoHead(48, 16, 24, 8, norm_last_layer=False))
    net([torch.randn(2, 3, 32, 32)]).sum().backward()
    cancel_last_layer_gradients(net, epoch=0, freeze_epochs=1)
    assert net.head.last_layer.weight_v.grad is None
    assert net.head.mlp[0].weight.grad is not None
    decayed, plain = param_groups(net)
    assert all(p.ndim > 1 for p in decayed["params"])
    assert all(p.ndim == 1 for p in plain["params"]) and plain["weight_decay"] == 0.0


def test_multi_crop_net_returns_one_cls_projection_per_crop_and_drop_path_trains_only():
    vit = DinoViT(backbone_config("tiny_vit8"))
    net = MultiCropNet(vit, DinoHead(48, 16, 24, 8))
    crops = [torch.randn(2, 3, 32, 32)] * 2 + [torch.randn(2, 3, 16, 16)] * 3
    assert net(crops).shape == (10, 16)
    handles = add_drop_path(vit, 0.5)
    assert len(handles) == 2  # block 0 has rate 0; block 1 has 0.5 on both branches
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net([x]), net([x]))
    net.train()
    outs = {tuple(net([x]).detach().flatten()[:3].tolist()) for _ in range(8)}
    assert len(outs) > 1


def test_random_resized_crop_stays_inside_with_the_scale_and_ratio():
    rng = np.random.default_rng(1)
    for _ in range(200):
        top, left, h, w = resized_crop_box(90, 120, (0.05, 0.4), rng)
        assert top >= 0 and top + h <= 90 and left >= 0 and left + w <= 120
        assert h * w <= 0.4 * 90 * 120 * 1.1


def test_augmentations_give_normalised_crops_of_each_size():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pol = policies(32, 16, 3, (0.4, 1.0), (0.05, 0.4))
    assert [p.blur_p for p in pol] == [1.0, 0.1, 0.5, 0.5, 0.5]
    assert [p.solarize_p for p in pol] == [0.0, 0.2, 0.0, 0.0, 0.0]
    crop = augment(frame, pol[0], rng)
    assert crop.shape == (32, 32, 3) and crop.min() >= 0 and crop.max() <= 1
    batch = multi_crop_batch([frame, frame], pol, rng)
    assert [b.shape for b in batch] == [(2, 3, 32, 32)] * 2 + [(2, 3, 16, 16)] * 3


def test_entropies_and_collapse_check():
    k = 64
    uniform = torch.full((4, k), 1.0 / k)
    ent = teacher_entropies(uniform)
    assert ent.sample == pytest.approx(math.log(k), rel=1e-5)
    assert "uniform" in collapse(ent, k)
    one = torch.zeros(4, k)
    one[:, 3] = 1.0
    assert "one prototype" in collapse(teacher_entropies(one), k)
    assert collapse(Entropies(sample=1.0, batch=3.0), k) is None


def test_patch_labels_take_the_majority_and_ignore():
    labels = np.full((4, 8), 255, np.uint8)
    labels[:, :4] = 2
    labels[0, 4:] = 1   # one row of four in the right cell: ignore wins
    out = patch_labels(labels, 4, n_classes=9)
    np.testing.assert_array_equal(out, [[2, 255]])
