"""The replay's overlay video, written frame by frame with OpenCV (MPEG-4 part 2 in MP4).

``mp4v`` is the codec every OpenCV build can write (the pip wheels have no H.264 encoder); browsers
may not play it inline, media players and the ROS tools' users do.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

VIDEO_FILE = "overlay.mp4"
MAX_WIDTH = 1280  # keeps a side-by-side comparison of 1080p frames a reasonable file


class VideoSink:
    """Opened on the first frame (whose size fixes the video's); later frames are resized to it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps if fps > 0 else 10.0
        self.frames = 0
        self.error: str | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def add(self, *panels_rgb: np.ndarray) -> None:
        """One video frame: the panels (same height) side by side."""
        if self.error:
            return
        frame = panels_rgb[0] if len(panels_rgb) == 1 else np.hstack(panels_rgb)
        if self._writer is None:
            h, w = frame.shape[:2]
            scale = min(1.0, MAX_WIDTH / w)
            # MPEG-4 wants even dimensions.
            self._size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, self._size)
            if not self._writer.isOpened():
                self.error = "OpenCV could not open an MP4 (mp4v) writer"
                log.warning("no overlay video: %s", self.error)
                return
        assert self._size is not None
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
