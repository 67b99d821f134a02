"""Backbone + head as the official multi-crop wrapper runs them (docs/pretrain.md §1).

The shared :class:`uwstego.training.backbones.DinoViT` returns patch tokens only (what the feature
cache and the export need); the CLS token is read at its final LayerNorm with a forward hook,
and the student's stochastic depth is applied by hooks on each block's residual-branch
modules (``ls1``/``ls2``), so the backbone's code and state-dict keys stay untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from uwstego.training.backbones.vit import DinoViT
from uwstego.training.pretrain.head import DinoHead


def drop_path(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Stochastic depth: zero whole residual branches per sample, rescale by 1 / keep."""
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def add_drop_path(backbone: DinoViT, max_rate: float) -> list[RemovableHandle]:
    """Rates rising linearly from 0 to ``max_rate`` over the blocks, in training mode only."""
    handles = []
    depth = len(backbone.blocks)
    for i, block in enumerate(backbone.blocks):
        rate = max_rate * i / max(depth - 1, 1)
        if rate <= 0:
            continue

        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor,
                 rate: float = rate) -> torch.Tensor:
            return drop_path(output, rate) if module.training else output

        handles += [block.ls1.register_forward_hook(hook), block.ls2.register_forward_hook(hook)]
    return handles


class MultiCropNet(nn.Module):
    """``backbone.*`` / ``head.*``: crops of one size go through the backbone as one batch,
    their CLS tokens are concatenated in crop order, then the head runs once."""

    def __init__(self, backbone: DinoViT, head: DinoHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self._tokens: torch.Tensor | None = None
        backbone.norm.register_forward_hook(self._keep_tokens)

    def _keep_tokens(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self._tokens = output

    def cls_tokens(self, images: torch.Tensor) -> torch.Tensor:
        self.backbone(images)
        tokens, self._tokens = self._tokens, None
        assert tokens is not None
        return tokens[:, 0]

    def forward(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:
        out, start = [], 0
        while start < len(crops):
            end = start + 1
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            out.append(self.cls_tokens(torch.cat(list(crops[start:end]))))
            start = end
        return self.head(torch.cat(out))
