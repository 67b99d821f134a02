"""``uwstego train`` on a full disk: one line naming the file: "no space left on PATH"
(numpy reports the short write of a feature shard without any errno). Real tool, small tmpfs in
a private mount namespace (tests/test_disk_full.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.commands import assert_one_line_error
from tests.support.media import scene, write_image
from tests.test_disk_full import run_on_full_disk, small_disk  # noqa: F401 - a fixture

pytest.importorskip("torch")


def test_train_on_a_full_disk_says_no_space_left(small_disk: Path, tmp_path: Path):  # noqa: F811
    from uwstego.training.backbones import save_random_checkpoint

    weights = save_random_checkpoint("tiny_vit8", tmp_path / "tiny.pth", seed=0)
    images = tmp_path / "images"
    for i in range(24):
        write_image(images / f"{i:03d}.png", scene(i))
    # Room for the cache's meta.json, not for a shard of 24 items of 48 x 8 x 8 float16.
    outcome, _ = run_on_full_disk(small_disk / "run", 16, None, "uwstego", "train", images,
                                  "--out", "{disk}/run", "--backbone", "tiny_vit8",
                                  "--weights", weights, "--resolution", "64", "--crop-type",
                                  "full", "--steps", "2", "--batch-size", "2")
    line = assert_one_line_error(outcome, "no space left on", "shard_00000.npy")
    assert "Errno None" not in line
