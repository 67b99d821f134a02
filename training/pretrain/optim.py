"""The optimisation details of DINO (docs/pretrain.md §4): AdamW parameter groups, per-tensor
gradient clipping, the frozen last layer of the first epochs, and the teacher's EMA."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on weights; none on biases and 1-D (norm) parameters; frozen ones left out.
    The first group is the decayed one (its decay follows the schedule)."""
    decayed, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if name.endswith(".bias") or param.ndim == 1 else decayed).append(param)
    return [{"params": decayed}, {"params": plain, "weight_decay": 0.0}]


def set_schedule(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = lr
        if i == 0:
            group["weight_decay"] = weight_decay


def clip_gradients(model: nn.Module, clip: float) -> list[float]:
    """Scale each parameter's gradient to L2 norm <= ``clip`` on its own; returns the norms
    before clipping."""
    norms = []
    for param in model.parameters():
        if param.grad is None:
            continue
        norm = float(param.grad.detach().norm(2))
        norms.append(norm)
        coef = clip / (norm + 1e-6)
        if coef < 1:
            param.grad.mul_(coef)
    return norms


def cancel_last_layer_gradients(model: nn.Module, epoch: int, freeze_epochs: int) -> None:
    if epoch >= freeze_epochs:
        return
    for name, param in model.named_parameters():
        if "last_layer" in name:
            param.grad = None


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """theta_t <- m theta_t + (1 - m) theta_s, over backbone and head."""
    for p_t, p_s in zip(teacher.parameters(), student.parameters(), strict=True):
        p_t.mul_(momentum).add_(p_s.detach(), alpha=1 - momentum)
