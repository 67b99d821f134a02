"""What a run shows without labels (docs/pretrain.md §7): the loss, the teacher's output
entropy per sample and of its batch mean, and a collapse check; written to ``OUT/log.csv``
and TensorBoard by rank 0."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from uwstego.training.csv_log import restart_csv

log = logging.getLogger(__name__)

LOG_FILE = "log.csv"
TENSORBOARD_DIR = "tensorboard"
COLUMNS = ("step", "epoch", "loss", "lr", "weight_decay", "momentum", "teacher_temp",
           "teacher_entropy", "batch_entropy", "grad_norm", "images_per_s", "elapsed_s",
           "probe_miou")


@dataclass(frozen=True)
class Entropies:
    """In nats. ``sample``: mean entropy of each teacher distribution (log K when uniform);
    ``batch``: entropy of their batch mean (0 when every image picks the same prototype)."""

    sample: float
    batch: float


def teacher_entropies(probs: torch.Tensor) -> Entropies:
    probs = probs.float()
    sample = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
    mean = probs.mean(0)
    batch = -(mean * torch.log(mean.clamp_min(1e-12))).sum()
    return Entropies(float(sample), float(batch))


def collapse(entropies: Entropies, out_dim: int) -> str | None:
    """The collapse a batch shows, if any: uniform (sharpening lost) or one prototype
    (centring lost); DINO's two failure modes."""
    if entropies.sample > 0.95 * math.log(out_dim):
        return "uniform: the teacher's outputs are flat over all prototypes"
    if entropies.batch < math.log(2):
        return "one prototype: every image maps to the same teacher output"
    return None


class RunLog:
    """``log.csv`` (trimmed to the resumed step) and TensorBoard scalars; no-op off rank 0."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        self.path = out_dir / LOG_FILE
        restart_csv(self.path, COLUMNS, start_step)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS, lineterminator="\n")
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR),
                                    purge_step=start_step + 1 if start_step else None)

    def row(self, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._csv.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                            for k, v in values.items()})
        self._file.flush()
        for name, value in values.items():
            if name != "step" and value != "":
                self.writer.add_scalar(f"pretrain/{name}", float(value), int(values["step"]))

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self.writer.close()
