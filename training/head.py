"""The distilled STEGO segmentation head ("code") on frozen backbone features (docs/stego.md §3).

``code = lin(drop(f)) + nl(drop(f))`` with two independent channel-dropout masks in train mode;
the loss correlates a third independently dropped-out copy of the feature (:meth:`signal`). The
code is not L2-normalised here: the loss and the cluster lookup normalise it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """Saved with every checkpoint: enough to rebuild the head before loading its weights."""

    in_dim: int
    code_dim: int = 70
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.in_dim < 1 or self.code_dim < 1:
            raise ValueError(f"head dimensions must be positive, got in_dim={self.in_dim}, "
                             f"code_dim={self.code_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        return cls(in_dim=int(data["in_dim"]), code_dim=int(data["code_dim"]),
                   dropout=float(data["dropout"]))


class SegmentationHead(nn.Module):
    """Linear plus nonlinear 1x1 branches; all convolutions with bias, PyTorch default init."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config.in_dim, config.code_dim
        self.drop = nn.Dropout2d(p=config.dropout)
        self.lin = nn.Conv2d(c, d, 1)  # STEGO's "cluster1"
        self.nl = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, d, 1))  # "cluster2"

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` features -> ``[B, D, h, w]`` code.

        Each ``self.drop`` call draws its own channel mask, so the two branches see independent
        masks in train mode; in eval mode dropout is the identity.
        """
        return self.lin(self.drop(feats)) + self.nl(self.drop(feats))

    def signal(self, feats: torch.Tensor) -> torch.Tensor:
        """The feature handed to the loss: dropped out with a third, independent mask."""
        return self.drop(feats)
