"""One STEGO training step and everything it touches (docs/stego.md §7).

One step: zero both optimisers; run the head in train mode on the anchor batch and its KNN-positive
batch; correlate the dropped-out features (a third dropout mask) with the codes; train the cluster
probe on the detached anchor code; one backward; step both optimisers. Under torch.distributed the
head and probe are wrapped in DDP together (so both are averaged, as Lightning does for the
official code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from uwstego.training import distributed as ddp
from uwstego.training.clusters import ClusterProbe
from uwstego.training.head import HeadConfig, SegmentationHead
from uwstego.training.settings import TrainSettings
from uwstego.training.stego import CorrelationTerms, correlation_loss, get_preset


class StegoModule(nn.Module):
    """Head and cluster probe in one module so that one DDP wrapper averages both."""

    def __init__(self, head: SegmentationHead, probe: ClusterProbe) -> None:
        super().__init__()
        self.head = head
        self.probe = probe

    def forward(self, feats: torch.Tensor,
                n_anchor: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(signal, code, probe_loss)``; the probe sees only the detached anchor code."""
        code = self.head(feats)
        signal = self.head.signal(feats)
        probe_loss, _ = self.probe(code[:n_anchor].detach())
        return signal, code, probe_loss


@dataclass
class TrainRun:
    """Everything a step touches (mutable: optimisers and generators advance)."""

    module: StegoModule
    wrapped: nn.Module
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer]
    generator: torch.Generator
    settings: TrainSettings
    device: torch.device

    @property
    def head(self) -> SegmentationHead:
        return self.module.head


def rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each rank, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def build_run(in_dim: int, settings: TrainSettings, device: torch.device,
              info: ddp.DistInfo) -> TrainRun:
    """Head, probe, optimisers and this rank's random streams (DDP-wrapped when distributed)."""
    torch.manual_seed(settings.seed)  # identical initial weights on every rank
    head = SegmentationHead(HeadConfig(in_dim, settings.code_dim, settings.dropout))
    module = StegoModule(head, ClusterProbe(settings.code_dim, settings.clusters)).to(device)
    wrapped: nn.Module = module
    if info.active:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(module, device_ids=ids)
    optimizers = (torch.optim.Adam(head.parameters(), lr=settings.lr),
                  torch.optim.Adam(module.probe.parameters(), lr=settings.probe_lr))
    # Dropout masks and the loss's sample points differ between ranks, as in DDP STEGO.
    torch.manual_seed(rank_seed(settings.seed, info.rank))
    generator = torch.Generator().manual_seed(rank_seed(settings.seed + 1, info.rank))
    return TrainRun(module, wrapped, optimizers, generator, settings, device)


def train_step(run: TrainRun, feats: torch.Tensor,
               feats_pos: torch.Tensor) -> tuple[CorrelationTerms, torch.Tensor]:
    """One optimisation step on an anchor batch and its KNN-positive batch."""
    s = run.settings
    preset = get_preset(s.preset)
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    run.wrapped.train()
    n = feats.shape[0]
    # Anchor and positive go through the head as one batch: Dropout2d masks are drawn per
    # sample, so this equals two calls, and DDP sees exactly one forward per backward.
    signal, code, probe_loss = run.wrapped(torch.cat([feats, feats_pos]), n)
    terms = correlation_loss(signal[:n], signal[n:], code[:n], code[n:], None, None, None,
                             preset.shifts, preset.weights, feature_samples=s.feature_samples,
                             neg_samples=s.neg_samples, generator=run.generator)
    (terms.total + probe_loss).backward()
    for opt in run.optimizers:
        opt.step()
    return terms, probe_loss.detach()
