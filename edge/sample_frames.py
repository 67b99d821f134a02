"""Sample frames for checking a graph or engine against a reference: synthetic or from a folder.

Torch-free, so the vehicle can check its freshly built engine with the same frames the
workstation's export used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from uwstego.contract import IMAGE_SUFFIXES
from uwstego.enhance import Enhancer, EnhanceSettings
from uwstego.image_files import read_image_file
from uwstego.image_size import Size


def synthetic_frames(camera: Size, count: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded smooth colour fields with ellipses and noise, tinted like water: regions and
    boundaries for the model to segment, cheap, and the same on every machine."""
    rng = np.random.default_rng(seed)
    w, h = camera.width, camera.height
    frames = []
    for _ in range(count):
        coarse = rng.uniform(0.0, 1.0, size=(rng.integers(3, 7), rng.integers(4, 9), 3))
        img = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(int(rng.integers(2, 6))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(w // 10 + 1, w // 3 + 2)),
                    int(rng.integers(h // 10 + 1, h // 3 + 2)))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                        rng.uniform(0.0, 1.0, 3).tolist(), -1)
        img = img * np.array([0.45, 0.85, 0.95], np.float32) + rng.normal(0, 0.03, img.shape)
        frames.append((np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return frames


def folder_frames(folder: Path, camera: Size, count: int) -> list[np.ndarray]:
    """Up to ``count`` images from ``folder`` (sorted by name), as RGB at the camera size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sample folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise ValueError(f"sample folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for path in files:
        bgr = read_image_file(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frames.append(cv2.resize(rgb, camera.dsize,
                                 interpolation=cv2.INTER_AREA))
    return frames


def host_stage(frames: Sequence[np.ndarray], settings: EnhanceSettings
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The vehicle's host stage over ``frames`` as one stream: ``(image, params)`` pairs."""
    enhancer = Enhancer(settings)
    return [enhancer.host_stage(frame) for frame in frames]
