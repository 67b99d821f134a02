"""``uwstego pretrain`` under DDP: 2 gloo ranks on the CPU. The centre is the EMA of the teacher
outputs averaged over the *global* batch (all-reduced), and a short run through the real
command writes one official checkpoint."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from uwstego.training.backbones import read_checkpoint
from uwstego.training.synth import DiveSettings
from uwstego.training.synth.writer import write_dive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)


def _outputs(rank: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(rank).normal(size=(6, 5)))


def _centre_worker(rank: int, port: int, out: str) -> None:
    from uwstego.training.pretrain.loss import DinoLoss

    _join(rank, port)
    torch.distributed.init_process_group("gloo")
    try:
        loss = DinoLoss(5, 4, np.array([0.04]), center_momentum=0.9).double()
        loss.update_center(_outputs(rank))
        torch.save(loss.center, f"{out}/centre{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_centre_is_averaged_over_the_global_batch(tmp_path):
    torch.multiprocessing.spawn(_centre_worker, args=(_free_port(), str(tmp_path)), nprocs=2,
                                join=True)
    expected = 0.1 * torch.cat([_outputs(0), _outputs(1)]).mean(0, keepdim=True)
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(tmp_path / f"centre{rank}.pt"), expected)


def _cli_worker(rank: int, port: int, argv: list[str]) -> None:
    import argparse

    from uwstego.training.pretrain.cli import register

    _join(rank, port)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    assert args.func(args) == 0


def test_two_process_gloo_run_writes_one_official_checkpoint(tmp_path):
    dive = tmp_path / "dive"
    write_dive(DiveSettings(seed=6, frames=8, width=64, height=64), dive, save_range=False)
    out = tmp_path / "run"
    argv = ["pretrain", str(dive), "--out", str(out), "--backbone", "tiny_vit8", "--epochs", "2",
            "--batch-size", "2", "--global-size", "32", "--local-size", "16",
            "--local-crops", "2", "--out-dim", "32", "--warmup-epochs", "1",
            "--frame-size", "40", "--log-every", "1", "--checkpoint-every", "2"]
    torch.multiprocessing.spawn(_cli_worker, args=(_free_port(), argv), nprocs=2, join=True)
    state = read_checkpoint(out / "checkpoint.pth")
    assert state["step"] == 4 and state["epoch"] == 2  # 8 frames / (2 x 2) = 2 steps an epoch
    assert all(k.startswith("module.") for k in state["student"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    with open(out / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    assert Path(out / "teacher_backbone.pth").is_file()
