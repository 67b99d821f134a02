"""The DINO loss: cross-entropy between the centred, sharpened teacher and the student over
every pair of different crops, and the centre's EMA (docs/pretrain.md §3)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from uwstego.training.distributed import dist_info


class DinoLoss(nn.Module):
    """``center`` is a buffer so that ``state_dict()`` is the official ``{'center': ...}``."""

    def __init__(self, out_dim: int, ncrops: int, teacher_temps: np.ndarray,
                 student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if ncrops < 2:
            raise ValueError(f"DINO needs at least the 2 global crops, got {ncrops} crops")
        self.ncrops = ncrops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.teacher_temps = np.asarray(teacher_temps, dtype=np.float64)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: torch.Tensor, epoch: int) -> torch.Tensor:
        """softmax((t - c) / tau_t(epoch)), no gradient."""
        temp = float(self.teacher_temps[min(epoch, len(self.teacher_temps) - 1)])
        return F.softmax((teacher_out - self.center) / temp, dim=-1).detach()

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor,
                epoch: int) -> torch.Tensor:
        """``student_out`` [ncrops * B, K] and ``teacher_out`` [2 * B, K], crop-major."""
        student = (student_out / self.student_temp).chunk(self.ncrops)
        teacher = self.teacher_probs(teacher_out, epoch).chunk(2)
        total, pairs = student_out.new_zeros(()), 0
        for i, q in enumerate(teacher):
            for v, s in enumerate(student):
                if v == i:
                    continue  # never the same view for teacher and student
                total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
                pairs += 1
        self.update_center(teacher_out)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """c <- m c + (1 - m) mean of the teacher outputs of the global batch (all ranks)."""
        batch_center = teacher_out.sum(dim=0, keepdim=True)
        info = dist_info()
        if info.active:
            dist.all_reduce(batch_center)
        batch_center = batch_center / (len(teacher_out) * info.world_size)
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
