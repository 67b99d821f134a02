"""Replay's bag reading and training's image folders share the node's decoding: a declared-size
bomb or a frame OpenCV chokes on is skipped and counted, never raised, and nothing is allocated
for it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.support.hostile import jpeg_declaring
from uwstego.bags import BagWriter, ReadStats, iter_bag_images
from uwstego.rosimage import encode_jpeg
from uwstego.training.data.sources import ImageFolder, ReadReport

W, H = 64, 48


def _bomb(width: int, height: int) -> np.ndarray:
    jpeg = encode_jpeg(np.full((H, W, 3), 90, np.uint8)).tobytes()
    return np.frombuffer(jpeg_declaring(jpeg, width, height), np.uint8)


def test_bag_reading_skips_and_counts_bombs(tmp_path: Path) -> None:
    topic = "/camera/image_raw/compressed"
    good = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with BagWriter(tmp_path / "bag") as bag:
        bag.write_compressed(topic, 1, good)
        for t, size in ((2, 20000), (3, 40000)):  # 40000^2 is over OpenCV's own limit
            msg = bag.store.types["sensor_msgs/msg/CompressedImage"](
                header=bag.header(t, "cam"), format="jpeg", data=_bomb(size, size))
            bag.write_message(topic, t, "sensor_msgs/msg/CompressedImage", msg)
        bag.write_compressed(topic, 4, good)
    stats = ReadStats()
    frames = list(iter_bag_images(tmp_path / "bag", topic, stats=stats))
    assert [f.t_ns for f in frames] == [1, 4]
    assert (stats.read, stats.yielded, stats.skipped) == (4, 2, 2)
    assert all("max_pixels" in reason for reason in stats.reasons)


def test_image_folders_skip_bombs(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    _bomb(30000, 30000).tofile(tmp_path / "b.jpg")
    report = ReadReport()
    frames = list(ImageFolder(tmp_path).frames(report))
    assert len(frames) == 1 and report.seen == 2
    assert len(report.skipped) == 1 and "max_pixels" in report.skipped[0]["reason"]
