"""STEGO's correlation loss pinned on hand-computed cases and an independent loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from uwstego.training.stego import PRESETS, correlation_loss, derange, get_preset, sample_at

SHIFTS = (0.1, 0.2, 0.3)  # self, knn, random
WEIGHTS = (0.5, 1.0, 2.0)
R2 = 1.0 / math.sqrt(2.0)


def _maps(*vectors: tuple[float, float]) -> torch.Tensor:
    """One 1x1 feature map per vector: ``[B, C, 1, 1]``."""
    return torch.tensor(vectors, dtype=torch.float64)[:, :, None, None]


def _hand_case() -> dict[str, torch.Tensor]:
    # On a 1x1 map every sample point reads the only pixel, so S = 1 reduces each correlation to
    # one number per image and the whole loss can be worked out on paper.
    return {
        "feats": _maps((1, 0), (0, 1)),
        "feats_pos": _maps((3, 4), (0, 2)),  # unit: (0.6, 0.8), (0, 1)
        "code": _maps((1, 0), (-1, 1)),
        "code_pos": _maps((0, 1), (-1, 0)),
    }


def _hand_loss(zero_clamp: bool = True, requires_grad: bool = False):
    case = _hand_case()
    if requires_grad:
        for t in case.values():
            t.requires_grad_(True)
    coords = torch.zeros(2, 1, 1, 2, dtype=torch.float64)
    terms = correlation_loss(case["feats"], case["feats_pos"], case["code"], case["code_pos"],
                             coords, coords, [torch.tensor([1, 0])], SHIFTS, WEIGHTS,
                             zero_clamp=zero_clamp)
    return case, terms


def test_hand_computed_terms():
    _, t = _hand_loss()
    # self: Fc = 1 for both images; centring leaves the batch mean 1; Cd = 1.
    #       L = -1 * (1 - 0.1) = -0.9.
    assert float(t.self_loss) == pytest.approx(-0.9)
    # knn: Fc = (0.6, 1.0). Pointwise centring removes each image's own mean (S = 1: itself) and
    #      adds the batch-global mean 0.8 -> Fd = (0.8, 0.8). Cd = (0, cos 45 deg).
    #      L = (0, -R2 * (0.8 - 0.2)) -> mean -0.3 * R2.
    assert float(t.knn_loss) == pytest.approx(-0.3 * R2)
    # random (perm [1, 0]): Fc = 0 -> Fd = 0; Cd = cos((1,0), (-1,1)) = -R2 for both, clamped to 0.
    assert float(t.random_loss) == pytest.approx(0.0)
    assert float(t.total) == pytest.approx(0.5 * -0.9 + 1.0 * -0.3 * R2 + 2.0 * 0.0)
    np.testing.assert_allclose(t.random_cd.flatten().numpy(), [-R2, -R2])
    assert t.random_cd.shape == (2, 1, 1, 1, 1)


def test_without_zero_clamp_negative_code_correlations_count():
    _, t = _hand_loss(zero_clamp=False)
    # L = -(-R2) * (0 - 0.3) = -0.3 * R2 per image.
    assert float(t.random_loss) == pytest.approx(-0.3 * R2)
    assert float(t.self_loss) == pytest.approx(-0.9)


def test_gradient_reaches_only_the_code():
    case, t = _hand_loss(requires_grad=True)
    t.total.backward()
    assert case["feats"].grad is None and case["feats_pos"].grad is None
    assert case["code"].grad is not None and case["code"].grad.abs().sum() > 0


def test_clamped_pairs_give_no_gradient():
    case = _hand_case()
    case["code"].requires_grad_(True)
    coords = torch.zeros(2, 1, 1, 2, dtype=torch.float64)
    only_random = (0.0, 0.0, 1.0)
    t = correlation_loss(case["feats"], case["feats_pos"], case["code"], case["code_pos"],
                         coords, coords, [torch.tensor([1, 0])], SHIFTS, only_random)
    t.total.backward()
    # Every random pair has Cd < 0 here: the clamp stops them being pushed further apart.
    assert torch.count_nonzero(case["code"].grad) == 0


# --- an independent loop reference on a 4x4 grid with S = 2 ---------------------------------

def _pixel(coord: float, size: int) -> int:
    # align_corners=True: -1 and +1 are the centres of the first and last pixel.
    return round((coord + 1) / 2 * (size - 1))


def _ref_sample(t: np.ndarray, xy: np.ndarray) -> np.ndarray:
    b, c, h, w = t.shape
    s = xy.shape[1]
    out = np.zeros((b, c, s, s))
    for n in range(b):
        for i in range(s):
            for j in range(s):
                x, y = xy[n, j, i]  # the official grid has its axes 1 and 2 swapped
                out[n, :, i, j] = t[n, :, _pixel(y, h), _pixel(x, w)]
    return out


def _ref_term(fa, fb, za, zb, shift):
    def unit(v):
        return v / max(np.linalg.norm(v), 1e-10)

    b, _, s, _ = fa.shape
    fc = np.zeros((b, s, s, s, s))
    cd = np.zeros_like(fc)
    for n in range(b):
        for h in range(s):
            for w in range(s):
                for i in range(s):
                    for j in range(s):
                        fc[n, h, w, i, j] = unit(fa[n, :, h, w]) @ unit(fb[n, :, i, j])
                        cd[n, h, w, i, j] = unit(za[n, :, h, w]) @ unit(zb[n, :, i, j])
    global_mean = fc.mean()
    fd = np.zeros_like(fc)
    for n in range(b):
        for h in range(s):
            for w in range(s):
                fd[n, h, w] = fc[n, h, w] - fc[n, h, w].mean() + global_mean
    return -np.maximum(cd, 0) * (fd - shift)


def _grid_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    b, c, d, size = 3, 4, 3, 4
    feats, feats_pos = rng.normal(size=(2, b, c, size, size))
    code, code_pos = rng.normal(size=(2, b, d, size, size))
    centres = np.linspace(-1, 1, size)
    xy1 = rng.choice(centres, size=(b, 2, 2, 2))
    xy2 = rng.choice(centres, size=(b, 2, 2, 2))
    perms = [np.array([1, 2, 1]), np.array([2, 0, 1])]
    return feats, feats_pos, code, code_pos, xy1, xy2, perms


def test_matches_loop_reference_on_a_grid():
    feats, feats_pos, code, code_pos, xy1, xy2, perms = _grid_case()
    tt = [torch.from_numpy(a) for a in (feats, feats_pos, code, code_pos, xy1, xy2)]
    t = correlation_loss(*tt[:4], tt[4], tt[5], [torch.from_numpy(p) for p in perms],
                         SHIFTS, WEIGHTS)

    f1, z1 = _ref_sample(feats, xy1), _ref_sample(code, xy1)
    f2, z2 = _ref_sample(feats_pos, xy2), _ref_sample(code_pos, xy2)
    ref_self = _ref_term(f1, f1, z1, z1, SHIFTS[0]).mean()
    ref_knn = _ref_term(f1, f2, z1, z2, SHIFTS[1]).mean()
    # Negatives are read at coords2 from the permuted batch, and all passes share one mean.
    ref_rand = np.concatenate([
        _ref_term(f1, _ref_sample(feats[p], xy2), z1, _ref_sample(code[p], xy2), SHIFTS[2])
        for p in perms]).mean()
    assert float(t.self_loss) == pytest.approx(ref_self, abs=1e-12)
    assert float(t.knn_loss) == pytest.approx(ref_knn, abs=1e-12)
    assert float(t.random_loss) == pytest.approx(ref_rand, abs=1e-12)
    assert float(t.total) == pytest.approx(0.5 * ref_self + ref_knn + 2.0 * ref_rand, abs=1e-12)
    assert t.random_cd.shape == (len(perms) * 3, 2, 2, 2, 2)

    # The reference is sensitive to where negatives are read: coords1 gives another value.
    ref_rand_at_xy1 = np.concatenate([
        _ref_term(f1, _ref_sample(feats[p], xy1), z1, _ref_sample(code[p], xy1), SHIFTS[2])
        for p in perms]).mean()
    assert abs(ref_rand_at_xy1 - ref_rand) > 1e-6


def test_centring_uses_the_batch_global_mean():
    feats, feats_pos, code, code_pos, xy1, xy2, perms = _grid_case(1)
    tt = [torch.from_numpy(a) for a in (feats, feats_pos, code, code_pos, xy1, xy2)]
    full = correlation_loss(*tt, [torch.from_numpy(p) for p in perms], SHIFTS, WEIGHTS)
    # Scored image by image, the added-back mean changes, and with it the KNN term.
    singles = [correlation_loss(*[a[n:n + 1] for a in tt], [torch.tensor([0])], SHIFTS,
                                WEIGHTS).knn_loss for n in range(3)]
    assert abs(float(full.knn_loss) - float(torch.stack(singles).mean())) > 1e-6


def test_sampling_swaps_grid_axes():
    t = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    xy = torch.tensor([[[[-1.0, -1.0], [1.0, -1.0]], [[-1.0, 1.0], [1.0, 1.0]]]],
                      dtype=torch.float64)
    out = sample_at(t, xy)[0, 0]
    # out[i, j] is the value at xy[j, i]: xy[0, 1] = (x=1, y=-1) -> t[0, 3] = 3 lands at out[1, 0].
    assert out.tolist() == [[0.0, 12.0], [3.0, 15.0]]


def test_random_draws_are_seeded_and_shaped():
    feats, feats_pos, code, code_pos, *_ = _grid_case()
    tt = [torch.from_numpy(a) for a in (feats, feats_pos, code, code_pos)]
    a = correlation_loss(*tt, None, None, None, SHIFTS, WEIGHTS, feature_samples=3,
                         neg_samples=4, generator=torch.Generator().manual_seed(5))
    b = correlation_loss(*tt, None, None, None, SHIFTS, WEIGHTS, feature_samples=3,
                         neg_samples=4, generator=torch.Generator().manual_seed(5))
    assert float(a.total) == float(b.total)
    assert a.self_cd.shape == (3, 3, 3, 3, 3)
    assert a.random_cd.shape == (4 * 3, 3, 3, 3, 3)


def test_bad_inputs_are_refused():
    feats, feats_pos, code, code_pos, *_ = _grid_case()
    tt = [torch.from_numpy(a) for a in (feats, feats_pos, code, code_pos)]
    with pytest.raises(ValueError, match="shifts"):
        correlation_loss(*tt, None, None, None, (0.1, 0.2), WEIGHTS)
    with pytest.raises(ValueError, match="neg_perms"):
        correlation_loss(*tt, None, None, [torch.tensor([1, 0])], SHIFTS, WEIGHTS)
    with pytest.raises(ValueError, match="coords"):
        correlation_loss(*tt, torch.zeros(3, 2, 2, 2), torch.zeros(3, 3, 3, 2), None, SHIFTS,
                         WEIGHTS)


def test_derange_properties():
    gen = torch.Generator().manual_seed(0)
    repeats_seen = False
    for n in range(2, 9):
        for _ in range(50):
            p = derange(n, gen)
            assert p.dtype == torch.int64 and p.shape == (n,)
            assert bool((p != torch.arange(n)).all())
            assert int(p.min()) >= 0 and int(p.max()) < n
            repeats_seen |= len(set(p.tolist())) < n
    assert repeats_seen, "fixed points bumped by one must sometimes repeat an index"
    assert all(derange(2, gen).tolist() == [1, 0] for _ in range(20))
    with pytest.raises(ValueError, match="at least 2"):
        derange(1)


def test_presets():
    default = get_preset("cocostuff27_vits")
    assert default.weights == (0.67, 0.25, 0.63)
    assert default.shifts == (0.08, 0.02, 0.66)
    assert PRESETS["potsdam_vits"].rand_shift == 0.46
    with pytest.raises(ValueError, match="unknown loss preset"):
        get_preset("coco")
