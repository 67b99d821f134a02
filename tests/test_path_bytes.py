"""Paths whose bytes are not UTF-8 (Python holds them as surrogate escapes): image files and
graphs are read by their bytes, and where a path must be written as text the command refuses it
in one line before doing any work. Each case runs in a subprocess: before, some crashed it
(segmentation fault inside cv2.imread)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.bounded import run_bounded
from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool
from tests.support.media import scene, write_bag

CAMERA = (64, 48)
NAME = os.fsdecode(b"dive\xff\xfe")  # Latin-1 bytes from an old file system: not UTF-8


@pytest.fixture()
def odd(tmp_path: Path) -> Path:
    folder = tmp_path / NAME
    folder.mkdir()
    return folder


def _labels(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        ok, png = cv2.imencode(".png", np.full(CAMERA[::-1], i % 2, np.uint8))
        assert ok
        (folder / f"{i:06d}.png").write_bytes(png.tobytes())
    return folder


def test_masks_and_label_files_read_by_their_bytes(odd: Path):
    masks = _labels(odd / "masks", 2)
    outcome = run_bounded(
        "import sys; from pathlib import Path; from uwstego.training.masks import read_mask_kind; "
        "from uwstego.replay.source import DirGroundTruth; p = Path(sys.argv[1]); "
        "print(read_mask_kind(p / '000001.png')[0].max(), len(DirGroundTruth(p).files))",
        str(masks), cpu_s=60)
    assert outcome.returncode == 0, (outcome.returncode, outcome.stderr[-2000:])
    assert outcome.stdout.split() == ["1", "2"]


def test_replay_of_a_bundle_and_ground_truth_under_such_a_path(odd: Path, tmp_path: Path):
    bundle = make_tiny_bundle(tmp_path / "b", camera=CAMERA)
    shutil.move(bundle, odd / "bundle")
    gt = _labels(odd / "gt", 2)
    bag = write_bag(tmp_path / "bag", [scene(i, *CAMERA[::-1]) for i in range(2)])
    outcome = run_tool("uwstego", "replay", bag, "--bundle", odd / "bundle", "--backend",
                       "onnxruntime", "--gt-dir", gt, "--out", odd / "seg", "--no-progress",
                       timeout=120)
    assert outcome.returncode == 0, (outcome.returncode, outcome.stderr[-2000:])
    assert "against the ground truth" in outcome.stderr
    assert (odd / "seg" / "metadata.yaml").is_file()


def test_train_and_clusters_refuse_an_output_they_cannot_write_as_text(odd: Path):
    pytest.importorskip("torch")
    from tests.support.trained import tiny_model
    from uwstego.training.artifact import save_trained_model

    model = save_trained_model(odd / "run" / "model.pt", tiny_model())
    outcome = run_tool("uwstego", "clusters", model.parent, timeout=120)
    assert_one_line_error(outcome, "dive\\xff\\xfe", "is not valid UTF-8", "rename it")
    assert not (odd / "run" / "gallery").exists()
    outcome = run_tool("uwstego", "train", model.parent, "--out", odd / "new", "--random-weights",
                       "--backbone", "tiny_vit8", timeout=120)
    assert_one_line_error(outcome, "output folder", "is not valid UTF-8", "TensorBoard")
    assert not (odd / "new").exists()
