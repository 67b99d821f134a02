"""The replay's overlay video, written with OpenCV (MPEG-4 part 2 in MP4) on a thread of its own.

``mp4v`` is the codec every OpenCV build can write (the pip wheels have no H.264 encoder); browsers
may not play it inline, media players and the ROS tools' users do. Encoding runs on a background
thread fed through a short queue, so the replay's writer hands a frame over and goes on; OpenCV
releases the GIL while it resizes and encodes.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from edge.image_size import Size

log = logging.getLogger(__name__)

VIDEO_FILE = "overlay.mp4"
MAX_WIDTH = 1280  # keeps a side-by-side comparison of 1080p frames a reasonable file
_QUEUE = 8  # frames waiting to be encoded; a full queue makes the caller wait (none is dropped)
_END = None


class VideoSink:
    """Opened on the first frame (whose size fixes the video's); later frames are resized to it.

    Use as a context manager, or call :meth:`close`, which waits until every frame is written.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps if fps > 0 else 10.0
        self.frames = 0
        self.error: str | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: Size | None = None
        self._queue: queue.Queue[tuple[np.ndarray, ...] | None] = queue.Queue(_QUEUE)
        self._thread = threading.Thread(target=self._run, name="replay-video", daemon=True)
        self._thread.start()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def add(self, *panels_rgb: np.ndarray) -> None:
        """One video frame: the panels (same height) side by side. The arrays must not change
        afterwards: they are encoded later."""
        if self.error is None and self._thread.is_alive():
            self._queue.put(panels_rgb)

    def close(self) -> None:
        """Write the frames still queued and finish the file (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def _run(self) -> None:
        while (panels := self._queue.get()) is not _END:
            if self.error is not None:
                continue  # keep draining so that add() never blocks
            try:
                self._encode(panels)
            except Exception as exc:  # a broken video must not end the replay
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("overlay video stopped after %d frames: %s", self.frames, self.error)

    def _encode(self, panels: tuple[np.ndarray, ...]) -> None:
        frame = panels[0] if len(panels) == 1 else np.hstack(panels)
        if self._writer is None:
            size = Size.of(frame)
            scale = min(1.0, MAX_WIDTH / size.width)
            # MPEG-4 wants even dimensions.
            self._size = Size(max(2, int(size.width * scale) // 2 * 2),
                              max(2, int(size.height * scale) // 2 * 2))
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, self._size.dsize)
            if not self._writer.isOpened():
                raise RuntimeError("OpenCV could not open an MP4 (mp4v) writer")
        assert self._size is not None
        if Size.of(frame) != self._size:
            frame = cv2.resize(frame, self._size.dsize, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1
