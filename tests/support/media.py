"""Tiny real media files for data tests: image folders, videos and rosbag2 recordings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uwstego.bags import BagWriter

TOPIC = "/camera/image_raw"
T0 = 1_700_000_000_000_000_000
DT = 100_000_000  # 10 Hz


def scene(seed: int, h: int = 64, w: int = 80) -> np.ndarray:
    """A greenish underwater-like RGB frame with some structure, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([20 + 30 * np.sin(xx / 7 + seed), 90 + 50 * np.cos(yy / 9 - seed),
                     110 + 40 * np.sin((xx + yy) / 11)], axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def write_image(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise RuntimeError(f"could not write {path}")
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """MJPG AVI: lossy but decodable by every OpenCV build."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_bag(path: Path, frames: list[np.ndarray], compressed: bool = False) -> Path:
    with BagWriter(path) as bag:
        for i, rgb in enumerate(frames):
            if compressed:
                bag.write_compressed(TOPIC + "/compressed", T0 + i * DT, rgb)
            else:
                bag.write_image(TOPIC, T0 + i * DT, rgb)
    return path
