"""Pretraining checkpoints in the official DINO layout (docs/pretrain.md §6).

``checkpoint.pth`` = ``{'student', 'teacher', 'optimizer', 'epoch', 'args', 'dino_loss'}`` (+
``fp16_scaler``) with the student's keys under ``module.`` (the official student is always
wrapped in DistributedDataParallel) and the teacher's bare (``backbone.*``, ``head.*``), so the
official code restarts from it and :func:`uwstego.training.backbones.load_weights` (``uwstego train
--weights``) takes its teacher backbone. Our additions, ignored by the official loader:
``step`` (iterations done, for a resume mid-epoch) and ``settings``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uwstego.atomic import atomic_path
from uwstego.training.backbones.checkpoint import normalise_state_dict, read_checkpoint

CHECKPOINT_FILE = "checkpoint.pth"
DDP_PREFIX = "module."


def save_checkpoint(path: Path, *, student: nn.Module, teacher: nn.Module,
                    optimizer: torch.optim.Optimizer, dino_loss: nn.Module, epoch: int,
                    step: int, settings: dict[str, Any],
                    scaler: torch.amp.GradScaler | None = None) -> Path:
    state = {
        "student": {DDP_PREFIX + k: v for k, v in student.state_dict().items()},
        "teacher": teacher.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "args": argparse.Namespace(arch=settings["backbone"], **settings),
        "dino_loss": dino_loss.state_dict(),
        "step": step,
        "settings": settings,
    }
    if scaler is not None:
        state["fp16_scaler"] = scaler.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = read_checkpoint(path)
    missing = [k for k in ("student", "teacher", "optimizer", "dino_loss", "step", "settings")
               if k not in state]
    if missing:
        raise ValueError(f"{path}: not a uwstego pretrain checkpoint (no {', '.join(missing)}); "
                         "to start from its weights use --weights instead of --resume")
    return state


def strip_ddp(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}


def save_teacher_backbone(checkpoint: Path, out: Path, dtype: torch.dtype = torch.float16
                          ) -> Path:
    """The teacher's ViT alone, bare keys, as the released ``dino_*_pretrain.pth`` files."""
    state = normalise_state_dict(read_checkpoint(checkpoint), str(checkpoint))
    with atomic_path(out) as tmp:
        torch.save({k: v.to(dtype) for k, v in state.items()}, tmp)
    return out
