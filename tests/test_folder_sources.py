"""Training's folder source: a synthetic dive gives its camera frames only, and any other folder
says in the log how many images each subfolder gave."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.media import scene, write_image
from uwstego.contract import IMAGE_TOPIC
from uwstego.training.data.sources import (
    ImageFolder,
    ReadReport,
    RosBag,
    iter_frames,
    source_from_path,
)
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.synth.writer import write_dive

FRAMES = 3


def _dive(out: Path, folders: bool, bag: bool) -> Path:
    write_dive(DiveSettings(seed=2, frames=FRAMES, width=80, height=64), out, folders=folders,
               bag=bag, progress=False)
    return out


def _count(source) -> int:
    report = ReadReport()
    return sum(1 for _ in iter_frames([source], report))


@pytest.mark.parametrize("folders, bag", [(True, False), (True, True), (False, True)])
def test_a_synth_dive_gives_its_camera_frames_only(tmp_path: Path, folders, bag, caplog):
    dive = _dive(tmp_path / "dive", folders, bag)
    with caplog.at_level(logging.INFO, logger="uwstego.training.data.sources"):
        source = source_from_path(dive)
        frames = _count(source)
    # Not 3x (images + labels + range), not 2x (camera + labels_gt topics).
    assert frames == FRAMES
    if folders:
        assert isinstance(source, ImageFolder) and source.root == (dive / "images").resolve()
    else:
        assert isinstance(source, RosBag) and source.topic == IMAGE_TOPIC
    assert "is a synthetic dive" in caplog.text


def test_a_dive_folder_without_frames_is_one_line(tmp_path: Path):
    dive = _dive(tmp_path / "dive", True, False)
    for p in (dive / "images").iterdir():
        p.unlink()
    (dive / "images").rmdir()
    with pytest.raises(ValueError, match=r"holds dive\.json but neither images/ nor a rosbag2"):
        source_from_path(dive)


def test_other_folders_log_their_images_per_subfolder(tmp_path: Path, caplog):
    root = tmp_path / "footage"
    for i in range(2):
        write_image(root / "dive1" / f"{i}.png", scene(i))
    for i in range(3):
        write_image(root / "dive2" / "masks" / f"{i}.png", scene(i))
    write_image(root / "top.png", scene(9))
    with caplog.at_level(logging.INFO, logger="uwstego.training.data.sources"):
        assert _count(source_from_path(root)) == 6
    assert f"{root}: 6 images, by subfolder: (top) 1, dive1/ 2, dive2/masks/ 3" in caplog.text
