"""Where a gallery example comes from: its source file and time, and its full frame.

Each example tile is a square of a training crop; the page names the frame it was cut from
(file, frame number and time in a video, message time in a bag) and links to that whole frame,
as recorded, with the tile's area outlined, so that a person naming clusters sees the context.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from uwstego.atomic import atomic_path
from uwstego.training.data.crops import crop_box
from uwstego.training.data.sources import FrameRef, read_frame

FRAMES_DIR = "frames"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ExampleSource:
    ref: FrameRef
    crop: str  # the crop of the frame the tile was cut from ("full" or a five-crop name)
    top: int  # the tile's square inside that crop, in crop pixels
    left: int
    size: int


@lru_cache(maxsize=64)
def _video_fps(path: str) -> float:
    cap = cv2.VideoCapture(path)
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def describe(ref: FrameRef) -> tuple[str, str]:
    """``(source file, time)`` of a frame as a person would look for it."""
    name = Path(ref.path).name
    if ref.kind == "video":
        fps = _video_fps(ref.path)
        return name, f"frame {ref.index}" + (f" ({ref.index / fps:.2f} s)" if fps > 0 else "")
    if ref.kind == "bag":
        when = "" if ref.t_ns is None else " at " + datetime.fromtimestamp(
            ref.t_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
        return f"{name} {ref.topic or ''}".strip(), f"message {ref.index}{when}"
    return name, "still image"


def frame_box(frame_hw: tuple[int, int], example: ExampleSource,
              resolution: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` in frame pixels of the tile's square: the crop geometry of
    training (training/data/crops.py ``make_crops``) run backwards."""
    top, bottom, left, right = crop_box(*frame_hw, example.crop)
    scale = resolution / min(bottom - top, right - left)
    resized_h = max(resolution, round((bottom - top) * scale))
    resized_w = max(resolution, round((right - left) * scale))
    off_y = round((resized_h - resolution) / 2) + example.top
    off_x = round((resized_w - resolution) / 2) + example.left
    return (left + round(off_x / scale), top + round(off_y / scale),
            left + round((off_x + example.size) / scale),
            top + round((off_y + example.size) / scale))


def write_full_frame(folder: Path, example: ExampleSource, resolution: int,
                     color: tuple[int, int, int]) -> str:
    """Write the example's whole frame with its tile outlined; returns the file name."""
    ref = example.ref
    key = f"{ref.path}|{ref.topic}|{ref.index}|{example.crop}|{example.top}|{example.left}"
    name = hashlib.sha1(key.encode()).hexdigest()[:16] + ".jpg"
    rgb = np.ascontiguousarray(read_frame(ref))
    x0, y0, x1, y1 = frame_box(rgb.shape[:2], example, resolution)
    thickness = max(2, round(min(rgb.shape[:2]) / 200))
    cv2.rectangle(rgb, (x0, y0), (x1, y1), color, thickness)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"could not encode the frame of {ref.path}")
    with atomic_path(folder / name) as tmp:
        tmp.write_bytes(data.tobytes())
    return name
