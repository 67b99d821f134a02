"""Image to patch tokens: one strided convolution, as in the DINO and DINOv2 ViTs."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """``[B, 3, H, W] -> [B, (H/p)*(W/p), C]``, tokens in row-major patch order."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)
