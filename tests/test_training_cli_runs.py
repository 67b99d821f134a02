"""``uwstego train`` as a user runs it, in a subprocess: a refused first run, Ctrl-C/SIGTERM
mid-run and its resumption, and ``--resume`` on a finished run."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from tests.support.commands import REPO, assert_one_line_error, run_tool
from tests.support.media import DT, T0, TOPIC, scene, write_image
from uwstego.bags import BagWriter
from uwstego.training.artifact import load_trained_model
from uwstego.training.backbones import save_random_checkpoint
from uwstego.training.train_log import LOG_FILE
from uwstego.training.train_state import STATE_FILE
from uwstego.trust import SELF_PRETRAINED, ModelTrust, read_trust

pytestmark = pytest.mark.slow  # real subprocesses that each import torch

FRAMES = 10  # KNN keeps 8 neighbours of each of these; positives come from ranks 1..7


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_random_checkpoint("tiny_vit8", tmp_path_factory.mktemp("w") / "tiny.pth", seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i in range(FRAMES):
        write_image(root / f"{i:03d}.png", scene(i))
    return root


def _train_args(weights: Path, out: Path, steps: int, *extra: str | Path) -> list[str]:
    return ["train", "--out", str(out), "--backbone", "tiny_vit8", "--weights", str(weights),
            "--resolution", "32", "--crop-type", "full", "--steps", str(steps),
            "--batch-size", "2", "--clusters", "2", "--code-dim", "8", "--log-every", "1",
            *map(str, extra)]


def test_a_refused_first_run_does_not_block_the_corrected_command(weights, tmp_path):
    bag = tmp_path / "two_cameras"
    with BagWriter(bag) as writer:
        for i in range(FRAMES):
            writer.write_image(TOPIC, T0 + i * DT, scene(i))
            writer.write_image("/port/image_raw", T0 + i * DT, scene(100 + i))
    out = tmp_path / "run"
    refused = run_tool("uwstego", *_train_args(weights, out, 2, bag))
    assert_one_line_error(refused, "2 camera topics; choose one with --topic")
    corrected = run_tool("uwstego", *_train_args(weights, out, 2, bag, "--topic", TOPIC))
    assert corrected.returncode == 0, corrected.stderr[-2000:]
    model = load_trained_model(out / "model.pt")
    assert model.provenance["sources"][0]["topic"] == TOPIC
    # A weights file that is not the backbone's published one.
    assert read_trust(model.provenance) == ModelTrust(
        SELF_PRETRAINED, "tiny_vit8", f"{FRAMES} crops from bag {bag}", 2, 2)


def _last_logged_step(out: Path) -> int:
    rows = (out / LOG_FILE).read_text().splitlines()[1:] if (out / LOG_FILE).is_file() else []
    return int(rows[-1].split(",")[0]) if rows else 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_mid_run_saves_the_step_and_the_printed_command_resumes(weights, images,
                                                                        tmp_path, signum):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys; from uwstego.cli import main; sys.exit(main(sys.argv[1:]))"
    # No checkpoint falls due before the signal: whatever is saved, the signal saved.
    argv = _train_args(weights, out, 100_000, "--checkpoint-every", "100000", images)
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _last_logged_step(out) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr and " ERROR " not in stderr, stderr[-2000:]
    step = int(torch.load(out / STATE_FILE, weights_only=True)["step"])
    assert step >= 3 and step == _last_logged_step(out)
    assert not (out / "model.pt").exists()
    (line,) = [x for x in stderr.splitlines() if "resume with: " in x]
    assert f"at step {step}" in line and signal.Signals(signum).name in line
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:2] == ["uwstego", "train"] and command[-1] == "--resume"
    # The printed command as it is, with fewer steps so that the test ends.
    steps_at = command.index("--steps") + 1
    command[steps_at] = str(step + 2)
    resumed = run_tool("uwstego", *command[1:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{step + 2} steps from step {step}" in resumed.stderr, resumed.stderr[-2000:]
    assert [int(r.split(",")[0]) for r in (out / LOG_FILE).read_text().splitlines()[1:]] == \
        list(range(1, step + 3))
    assert load_trained_model(out / "model.pt").provenance["train_settings"]["steps"] == step + 2


def test_resume_of_a_finished_run(weights, images, tmp_path):
    out = tmp_path / "run"
    first = run_tool("uwstego", *_train_args(weights, out, 6, images))
    assert first.returncode == 0, first.stderr[-2000:]
    model_bytes = (out / "model.pt").read_bytes()
    past = run_tool("uwstego", *_train_args(weights, out, 4, images, "--resume"))
    assert_one_line_error(past, "training state is at step 6, past --steps 4", "--steps above 6")
    same = run_tool("uwstego", *_train_args(weights, out, 6, images, "--resume"))
    assert same.returncode == 0, same.stderr[-2000:]
    assert "nothing to do" in same.stderr and "training the head" not in same.stderr
    assert (out / "model.pt").read_bytes() == model_bytes  # k-means not redone


def test_train_help_says_what_the_topic_default_does():
    out = run_tool("uwstego", "train", "--help")
    text = " ".join(out.stdout.split())
    assert "every image topic" not in text
    assert "the bag's camera topic; a bag with several cameras is refused" in text
    assert np.all([w in text for w in ("default: dino_vits8", "default: 224")]), text
