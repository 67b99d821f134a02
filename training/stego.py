"""STEGO's contrastive correlation loss, exactly as in the official code (docs/stego.md §4).

Quirks kept on purpose because the published shifts were tuned with them:

- pointwise centring subtracts the mean over the *second* image's sample axes and adds back the
  **batch-global** mean (then subtracts the ~0 global mean of the centred tensor, as the code does);
- the code correlation is clamped at zero from below, never the feature correlation;
- negatives are sampled at the KNN-positive coordinates ``coords2`` from batches permuted by
  :func:`derange`, which never maps i to i but may repeat indices.

Sampling coordinates and permutations can be passed in, so tests are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The presets live in a torch-free module (the CLI lists them); re-exported here.
from uwstego.training.presets import DEFAULT_PRESET, PRESETS, LossPreset, get_preset

__all__ = ["DEFAULT_PRESET", "PRESETS", "CorrelationTerms", "LossPreset", "correlation_loss",
           "correlation_term", "derange", "get_preset", "pair_corr", "random_coords",
           "sample_at", "unit"]

NORM_EPS = 1e-10
NO_CLAMP = -9999.0  # the official lower bound when zero_clamp is off
STABILIZE_MAX = 0.8  # the official optional upper clamp (config "stabalize", off by default)


@dataclass(frozen=True)
class CorrelationTerms:
    """The unweighted term means, the weighted total, and the code correlations for histograms."""

    self_loss: torch.Tensor
    knn_loss: torch.Tensor
    random_loss: torch.Tensor
    total: torch.Tensor
    self_cd: torch.Tensor
    knn_cd: torch.Tensor
    random_cd: torch.Tensor

    def scalars(self) -> dict[str, float]:
        return {"self": float(self.self_loss), "knn": float(self.knn_loss),
                "random": float(self.random_loss), "total": float(self.total)}


def unit(t: torch.Tensor) -> torch.Tensor:
    """Channel-wise L2 normalisation with the official eps."""
    return F.normalize(t, dim=1, eps=NORM_EPS)


def pair_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[B,C,S,S] x [B,C,S,S] -> [B,S,S,S,S]``: out[n,h,w,i,j] = sum_c a[n,c,h,w] b[n,c,i,j]."""
    return torch.einsum("nchw,ncij->nhwij", a, b)


def sample_at(t: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``t`` at ``coords`` ``[B,S,S,2]`` (x, y in [-1, 1], pixel centres).

    The grid's axes 1 and 2 are swapped as in the official code, so ``out[b,:,i,j]`` is the
    value at ``coords[b,j,i]``.
    """
    return F.grid_sample(t, coords.permute(0, 2, 1, 3), mode="bilinear", padding_mode="border",
                         align_corners=True)


def derange(n: int, generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> torch.Tensor:
    """STEGO's ``super_perm``: a random permutation whose fixed points are bumped by one, mod n.

    Never maps i to i, but can repeat indices (``[0,2,1]`` becomes ``[1,2,1]``).
    """
    if n < 2:
        raise ValueError(f"negatives need a batch of at least 2 images, got {n}")
    perm = torch.randperm(n, generator=generator)
    perm[perm == torch.arange(n)] += 1
    return (perm % n).to(device)


def correlation_term(fa: torch.Tensor, fb: torch.Tensor, za: torch.Tensor, zb: torch.Tensor,
                     shift: float, pointwise: bool = True, zero_clamp: bool = True,
                     stabilize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One term's per-entry loss ``[B,S,S,S,S]`` and code correlation (docs/stego.md §4.3)."""
    with torch.no_grad():
        fd = pair_corr(unit(fa), unit(fb))
        if pointwise:
            old_mean = fd.mean()
            fd = fd - fd.mean(dim=(3, 4), keepdim=True)
            fd = fd - fd.mean() + old_mean
    cd = pair_corr(unit(za), unit(zb))
    low = 0.0 if zero_clamp else NO_CLAMP
    clamped = cd.clamp(low, STABILIZE_MAX) if stabilize else cd.clamp(low)
    return -clamped * (fd - shift), cd


def random_coords(batch: int, samples: int, generator: torch.Generator | None = None,
                  like: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform sampling coordinates ``[B,S,S,2]`` in [-1, 1], on ``like``'s device and dtype."""
    coords = torch.rand(batch, samples, samples, 2, generator=generator) * 2 - 1
    return coords if like is None else coords.to(device=like.device, dtype=like.dtype)


def correlation_loss(feats: torch.Tensor, feats_pos: torch.Tensor, code: torch.Tensor,
                     code_pos: torch.Tensor, coords1: torch.Tensor | None,
                     coords2: torch.Tensor | None, neg_perms: Sequence[torch.Tensor] | None,
                     shifts: Sequence[float], weights: Sequence[float], *,
                     feature_samples: int = 11, neg_samples: int = 5,
                     pointwise: bool = True, zero_clamp: bool = True, stabilize: bool = False,
                     generator: torch.Generator | None = None) -> CorrelationTerms:
    """STEGO's ContrastiveCorrelationLoss on anchor and KNN-positive batches.

    ``feats``/``feats_pos`` are the (dropped-out) backbone features ``[B,C,h,w]``, ``code`` and
    ``code_pos`` the head outputs ``[B,D,h,w]``. ``shifts`` and ``weights`` are ordered
    (self, knn, random). ``coords1``/``coords2`` (``[B,S,S,2]``) and ``neg_perms`` (index tensors
    of length B) are drawn from ``generator`` when ``None``, in the official order.
    """
    batch = feats.shape[0]
    if feats_pos.shape != feats.shape:
        raise ValueError(f"anchor features {tuple(feats.shape)} and positive features "
                         f"{tuple(feats_pos.shape)} differ in shape")
    if code.shape != code_pos.shape or code.shape[0] != batch:
        raise ValueError(f"codes {tuple(code.shape)} / {tuple(code_pos.shape)} do not match a "
                         f"batch of {batch}")
    if len(shifts) != 3 or len(weights) != 3:
        raise ValueError("shifts and weights are (self, knn, random) triples")
    device = feats.device
    if coords1 is None:
        coords1 = random_coords(batch, feature_samples, generator, feats)
    if coords2 is None:
        coords2 = random_coords(batch, feature_samples, generator, feats)
    if coords1.shape != coords2.shape or coords1.shape[0] != batch or coords1.shape[-1] != 2:
        raise ValueError(f"coords must both be [B,S,S,2] with B={batch}, got "
                         f"{tuple(coords1.shape)} and {tuple(coords2.shape)}")
    if neg_perms is None:
        neg_perms = [derange(batch, generator, device) for _ in range(neg_samples)]
    if not neg_perms or any(len(p) != batch for p in neg_perms):
        raise ValueError(f"neg_perms must be one or more index tensors of length {batch}")
    opts = {"pointwise": pointwise, "zero_clamp": zero_clamp, "stabilize": stabilize}
    b_self, b_knn, b_rand = shifts
    w_self, w_knn, w_rand = weights

    f1, z1 = sample_at(feats, coords1), sample_at(code, coords1)
    f2, z2 = sample_at(feats_pos, coords2), sample_at(code_pos, coords2)
    self_l, self_cd = correlation_term(f1, f1, z1, z1, b_self, **opts)
    knn_l, knn_cd = correlation_term(f1, f2, z1, z2, b_knn, **opts)
    neg = [correlation_term(f1, sample_at(feats[p], coords2), z1, sample_at(code[p], coords2),
                            b_rand, **opts) for p in neg_perms]
    rand_l = torch.cat([loss for loss, _ in neg])
    rand_cd = torch.cat([cd for _, cd in neg])

    self_m, knn_m, rand_m = self_l.mean(), knn_l.mean(), rand_l.mean()
    total = w_knn * knn_m + w_self * self_m + w_rand * rand_m
    return CorrelationTerms(self_m, knn_m, rand_m, total, self_cd, knn_cd, rand_cd)
