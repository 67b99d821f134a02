"""Pre-norm transformer block, with DINOv2's optional LayerScale on both residual branches."""

from __future__ import annotations

import torch
from torch import nn

from uwstego.training.backbones.attention import Attention
from uwstego.training.backbones.mlp import Mlp


class LayerScale(nn.Module):
    """Per-channel residual gain; the parameter is named ``gamma`` as in DINOv2 checkpoints."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layerscale: bool,
                 ln_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim) if layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layerscale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))
