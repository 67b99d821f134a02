"""The PyTorch reference segmentation: upsample the code, cosine to the centroids, argmax.

This is the official evaluation path (docs/stego.md §8, without the CRF); the exported graph must
reproduce its labels (docs/stego.md §9).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uwstego.training.clusters import cosine_scores
from uwstego.training.data.crops import normalise


def to_network_input(images01: list[np.ndarray],
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Float ``HxWx3`` RGB images in [0, 1] -> ImageNet-normalised ``[B, 3, H, W]``."""
    return torch.from_numpy(normalise(images01)).to(device)


@torch.no_grad()
def code_map(backbone: nn.Module, head: nn.Module, x: torch.Tensor,
             flip: bool = False) -> torch.Tensor:
    """Eval-mode code ``[B, D, h, w]``; ``flip`` averages with the mirrored image (official TTA)."""
    backbone.eval()
    head.eval()
    code = head(backbone(x))
    if flip:
        code = (code + head(backbone(x.flip(-1))).flip(-1)) / 2
    return code


@torch.no_grad()
def segment(backbone: nn.Module, head: nn.Module, centroids: np.ndarray | torch.Tensor,
            x: torch.Tensor, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels [B,H,W] int64, confidence [B,H,W])`` at the input's size.

    The D-channel code is upsampled bilinearly (``align_corners=False``) before the cosine, as
    the official evaluation does; confidence is the winning cosine.
    """
    return assign(code_map(backbone, head, x, flip), centroids, tuple(x.shape[-2:]))


@torch.no_grad()
def assign(code: torch.Tensor, centroids: np.ndarray | torch.Tensor,
           size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid by cosine of ``code`` upsampled to ``size``: ``(labels, confidence)``."""
    code = F.interpolate(code, size=size, mode="bilinear", align_corners=False)
    cent = torch.as_tensor(np.asarray(centroids), dtype=code.dtype, device=code.device)
    confidence, labels = cosine_scores(code, cent).max(dim=1)
    return labels, confidence
