"""Per-iteration schedules of the learning rate, weight decay, teacher momentum and teacher
temperature (docs/pretrain.md §4)."""

from __future__ import annotations

import numpy as np


def cosine_schedule(base: float, final: float, epochs: int, iters_per_epoch: int,
                    warmup_epochs: int = 0, start_warmup: float = 0.0) -> np.ndarray:
    """``epochs * iters_per_epoch`` values: a linear warm-up from ``start_warmup`` to ``base``
    over ``warmup_epochs``, then ``final + (base - final)(1 + cos(pi t / T)) / 2``."""
    if epochs <= 0 or iters_per_epoch <= 0:
        raise ValueError(f"a schedule needs epochs and iterations > 0, got {epochs}, "
                         f"{iters_per_epoch}")
    if warmup_epochs > epochs:
        raise ValueError(f"warm-up of {warmup_epochs} epochs exceeds the {epochs} epochs")
    warmup_iters = warmup_epochs * iters_per_epoch
    warmup = np.linspace(start_warmup, base, warmup_iters)
    t = np.arange(epochs * iters_per_epoch - warmup_iters)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t / max(len(t), 1)))
    return np.concatenate((warmup, cosine))


def teacher_temperature(warmup_temp: float, temp: float, warmup_epochs: int,
                        epochs: int) -> np.ndarray:
    """Per-epoch teacher temperature: linear from ``warmup_temp`` to ``temp``, then constant."""
    return np.concatenate((np.linspace(warmup_temp, temp, warmup_epochs),
                           np.full(epochs - warmup_epochs, temp)))
