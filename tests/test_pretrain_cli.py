"""``uwstego pretrain`` end to end through the real CLI on a tiny synthetic dive: the official
DINO checkpoint layout, ``uwstego train --weights`` on it, resume after a kill, one-line errors.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from tests.support.commands import REPO, assert_one_line_error, run_tool
from uwstego.training.backbones import build_backbone, read_checkpoint
from uwstego.training.synth import DiveSettings
from uwstego.training.synth.writer import write_dive

TINY = ["--backbone", "tiny_vit8", "--batch-size", "4", "--global-size", "32",
        "--local-size", "16", "--local-crops", "2", "--out-dim", "32", "--warmup-epochs", "1",
        "--frame-size", "40", "--log-every", "1"]


@pytest.fixture(scope="module")
def dive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pretrain") / "dive"
    write_dive(DiveSettings(seed=5, frames=8, width=64, height=64), path, save_range=False)
    return path


@pytest.fixture(scope="module")
def run(dive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain_run") / "run"
    outcome = run_tool("uwstego", "pretrain", dive, "--out", out, "--epochs", "2", *TINY,
                       "--eval-dive", dive, "--eval-every", "2", "--eval-size", "32",
                       "--checkpoint-every", "3")
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    return out


def test_checkpoint_has_the_official_dino_layout(run):
    state = read_checkpoint(run / "checkpoint.pth")
    assert {"student", "teacher", "optimizer", "epoch", "args", "dino_loss"} <= set(state)
    assert state["epoch"] == 2 and state["step"] == 4  # 8 frames / batch 4 = 2 steps an epoch
    assert all(k.startswith(("module.backbone.", "module.head.")) for k in state["student"])
    assert all(k.startswith(("backbone.", "head.")) for k in state["teacher"])
    assert {k.removeprefix("module.") for k in state["student"]} == set(state["teacher"])
    assert "head.last_layer.weight_g" in state["teacher"]
    assert tuple(state["dino_loss"]["center"].shape) == (1, 32)
    assert state["dino_loss"]["center"].abs().sum() > 0
    assert len(state["optimizer"]["param_groups"]) == 2
    assert state["args"].arch == "tiny_vit8"
    # The teacher is an EMA of the student, not a copy of it.
    assert not torch.equal(state["teacher"]["backbone.norm.weight"],
                           state["student"]["module.backbone.norm.weight"])


def test_teacher_loads_as_backbone_weights(run):
    from_ckpt = build_backbone("tiny_vit8", run / "checkpoint.pth")
    bare = build_backbone("tiny_vit8", run / "teacher_backbone.pth")
    teacher = read_checkpoint(run / "checkpoint.pth")["teacher"]
    for name, value in from_ckpt.state_dict().items():
        torch.testing.assert_close(value, teacher[f"backbone.{name}"])
        torch.testing.assert_close(value, bare.state_dict()[name])


def test_float16_teacher_file_loads_into_the_float32_backbone(run, tmp_path):
    from uwstego.training.pretrain.checkpoint import save_teacher_backbone

    path = save_teacher_backbone(run / "checkpoint.pth", tmp_path / "w16.pth")
    assert all(v.dtype == torch.float16 for v in read_checkpoint(path).values())
    half = build_backbone("tiny_vit8", path)
    full = build_backbone("tiny_vit8", run / "checkpoint.pth")
    for name, value in full.state_dict().items():
        torch.testing.assert_close(half.state_dict()[name], value.half().float())


def test_log_probe_and_summary(run):
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["teacher_entropy"]) > 0 for r in rows)
    assert rows[1]["probe_miou"] and rows[3]["probe_miou"] and not rows[0]["probe_miou"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["images_per_s"] > 0
    assert 0 <= summary["probe_miou"] <= 100
    assert any((run / "tensorboard").iterdir())


def test_uwstego_train_takes_the_checkpoint_as_weights(run, dive, tmp_path):
    outcome = run_tool("uwstego", "train", dive, "--out", tmp_path / "train",
                       "--backbone", "tiny_vit8", "--weights", run / "checkpoint.pth",
                       "--resolution", "32", "--crop-type", "full", "--clusters", "3",
                       "--code-dim", "8", "--steps", "2", "--batch-size", "2")
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert (tmp_path / "train" / "model.pt").is_file()


def _teacher(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "checkpoint.pth")["teacher"]


def test_resume_after_kill_ends_where_an_unbroken_run_ends(dive, tmp_path):
    args = [dive, "--epochs", "3", *TINY, "--checkpoint-every", "1"]
    whole = run_tool("uwstego", "pretrain", "--out", tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys; from uwstego.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "pretrain", "--out", str(out),
                             *map(str, args)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pth").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = read_checkpoint(out / "checkpoint.pth")["step"]
    assert step < 6
    resumed = run_tool("uwstego", "pretrain", "--out", out, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out / 'checkpoint.pth'} at step {step}" in resumed.stderr
    expected, got = _teacher(tmp_path / "whole"), _teacher(out)
    assert set(expected) == set(got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    with open(out / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 7))


def test_bad_input_gives_one_line_errors(run, dive, tmp_path):
    assert_one_line_error(run_tool("uwstego", "pretrain", tmp_path / "nope", "--out",
                                   tmp_path / "o", *TINY), "nope", "does not exist")
    assert_one_line_error(run_tool("uwstego", "pretrain", dive, "--out", run, *TINY),
                          "already holds a pretraining run", "--resume")
    assert_one_line_error(run_tool("uwstego", "pretrain", dive, "--out", tmp_path / "o2",
                                   *TINY, "--batch-size", "16"),
                          "8 frames are fewer than one global batch of 16")
    assert_one_line_error(run_tool("uwstego", "pretrain", dive, "--out", tmp_path / "o3",
                                   *TINY, "--resume"), "nothing to resume")
    assert_one_line_error(run_tool("uwstego", "pretrain", dive, "--out", run, *TINY,
                                   "--epochs", "3", "--resume"),
                          "settings changed", "epochs 2 -> 3")
    assert_one_line_error(run_tool("uwstego", "pretrain", dive, "--out", tmp_path / "o4",
                                   *TINY, "--backbone", "vit_huge"), "unknown backbone")
