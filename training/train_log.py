"""Rank 0's record of a training run: a CSV of every loss term, TensorBoard scalars and the
correlation histograms (docs/stego.md §7). A resumed run first drops what a killed run logged
after its last checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from uwstego.training import distributed as ddp
from uwstego.training.csv_log import restart_csv
from uwstego.training.stego import CorrelationTerms

LOG_FILE = "train_log.csv"
TENSORBOARD_DIR = "tensorboard"
LOG_COLUMNS = ("step", "epoch", "loss", "correlation", "self", "knn", "random", "cluster",
               "elapsed_s")


class TrainLog:
    """The CSV and TensorBoard writers; a no-op on every rank but 0 (``enabled=False``)."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / LOG_FILE
        if not enabled:
            return
        restart_csv(self.path, LOG_COLUMNS, start_step)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR),
                                    purge_step=start_step + 1 if start_step else None)

    def row(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._csv.writerow([step] + [f"{values[c]:.6g}" for c in LOG_COLUMNS[1:]])
        self._file.flush()
        for name in LOG_COLUMNS[2:-1]:
            self.writer.add_scalar(f"loss/{name}", values[name], step)

    def histograms(self, step: int, terms: CorrelationTerms) -> None:
        if not self.enabled:
            return
        for name, cd in (("self", terms.self_cd), ("knn", terms.knn_cd),
                         ("random", terms.random_cd)):
            self.writer.add_histogram(f"cd/{name}", cd.detach().float().cpu().flatten(), step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self.writer.close()


def loss_values(terms: CorrelationTerms, probe_loss: torch.Tensor,
                device: torch.device) -> dict[str, float]:
    """The step's loss terms, averaged over the ranks (every rank calls this alike)."""
    vec = torch.stack([terms.total.detach(), terms.self_loss.detach(), terms.knn_loss.detach(),
                       terms.random_loss.detach(), probe_loss]).to(device)
    corr, self_l, knn_l, rand_l, cluster = ddp.mean_over_ranks(vec).tolist()
    return {"loss": corr + cluster, "correlation": corr, "self": self_l, "knn": knn_l,
            "random": rand_l, "cluster": cluster}
