"""The replay's overlay video, written with OpenCV on a thread of its own, in a codec browsers
play: H.264 in MP4 where OpenCV's FFmpeg has an encoder for it, else VP8 in WebM (the pip
wheels' FFmpeg has VP8 but no H.264 encoder).

Each video frame is one panel per model side by side (a grid for more than two), each captioned
with its model's name and the frame's time, so that a compared run says which half is which.
Encoding runs on a background thread fed through a short queue, so the replay's writer hands a
frame over and goes on; OpenCV releases the GIL while it resizes and encodes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from uwstego.cpu_share import run_in_background
from uwstego.image_size import Size

log = logging.getLogger(__name__)

# (file name, FourCC), in order of preference; the first that OpenCV can open is used.
CODECS = (("overlay.mp4", "avc1"), ("overlay.webm", "VP80"))
VIDEO_FILES = tuple(name for name, _ in CODECS)
MAX_WIDTH = 1280  # keeps a grid of 1080p frames a reasonable file
GRID_COLUMNS = 2  # up to two models side by side, more in rows of two
_QUEUE = 8  # frames waiting to be encoded; a full queue makes the caller wait (none is dropped)
_END = None
# What FFmpeg and OpenCV print while a writer looks for an encoder (see _without_probe_noise).
PROBE_NOISE = re.compile(rb"\[[\w-]+ @ 0x[0-9a-f]+\] |OpenCV: FFMPEG: ")


def find_video(folder: Path) -> str | None:
    """The overlay video's file name in a report folder, if one was written."""
    return next((name for name in VIDEO_FILES if (folder / name).is_file()), None)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs each codec it cannot open; probing for one is not worth a warning."""
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:
        yield
        return
    previous = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(previous)


@contextlib.contextmanager
def _without_probe_noise() -> Iterator[None]:
    """FFmpeg (``[h264_v4l2m2m @ 0x...] Could not find a valid device``) and OpenCV's FFmpeg
    wrapper (``OpenCV: FFMPEG: tag ... is not supported``) print what a codec probe finds
    straight to the process's stderr, past Python; users read it as failures. The block's stderr
    goes to a file and everything else in it (another thread's log line) is written back after.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().splitlines(keepends=True)
                    if not PROBE_NOISE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def open_writer(folder: Path, fps: float, size: Size) -> tuple[cv2.VideoWriter, Path]:
    """The first writer of :data:`CODECS` that opens, and its path; RuntimeError if none."""
    for name, fourcc in CODECS:
        path = folder / name
        with _quiet_opencv(), _without_probe_noise():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size.dsize)
        if writer.isOpened():
            return writer, path
        writer.release()
        path.unlink(missing_ok=True)
    raise RuntimeError("OpenCV could open neither an H.264 (MP4) nor a VP8 (WebM) writer")


def caption(panel_rgb: np.ndarray, text: str) -> np.ndarray:
    """``panel_rgb`` with ``text`` on a dark band across its top (a new array)."""
    out = panel_rgb.copy()
    height = out.shape[0]
    scale = max(0.45, height / 700.0)
    thickness = max(1, round(scale * 2))
    (_, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = min(height, text_h + base + 6)
    out[:band] = (out[:band].astype(np.uint16) * 2 // 7).astype(np.uint8)
    cv2.putText(out, text, (4, text_h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    return out


def tile(panels: Sequence[np.ndarray], columns: int = GRID_COLUMNS) -> np.ndarray:
    """Panels of one size in a grid of ``columns`` (black where the last row is short)."""
    if len(panels) == 1:
        return panels[0]
    rows = math.ceil(len(panels) / columns)
    blank = np.zeros_like(panels[0])
    cells = [*panels, *[blank] * (rows * columns - len(panels))]
    return np.vstack([np.hstack(cells[r * columns:(r + 1) * columns]) for r in range(rows)])


class VideoSink:
    """Opened on the first frame (whose size fixes the video's); later frames are resized to it.

    Use as a context manager, or call :meth:`close`, which waits until every frame is written.
    ``path`` is the file written (``None`` until the first frame).
    """

    def __init__(self, folder: Path, fps: float) -> None:
        self.folder = folder
        self.path: Path | None = None
        self.fps = fps if fps > 0 else 10.0
        self.frames = 0
        self.error: str | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: Size | None = None
        self._queue: queue.Queue[tuple[tuple[np.ndarray, ...], tuple[str, ...]] | None] = \
            queue.Queue(_QUEUE)
        self._thread = threading.Thread(target=self._run, name="replay-video", daemon=True)
        self._thread.start()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def add(self, panels_rgb: Sequence[np.ndarray], captions: Sequence[str] = ()) -> None:
        """One video frame: the panels (one size), each with its caption. The arrays must not
        change afterwards: they are encoded later."""
        if self.error is None and self._thread.is_alive():
            self._queue.put((tuple(panels_rgb), tuple(captions)))

    def close(self) -> None:
        """Write the frames still queued and finish the file (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def _run(self) -> None:
        run_in_background()
        while (item := self._queue.get()) is not _END:
            if self.error is not None:
                continue  # keep draining so that add() never blocks
            try:
                self._encode(*item)
            except Exception as exc:  # a broken video must not end the replay
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("overlay video stopped after %d frames: %s", self.frames, self.error)

    def _encode(self, panels: tuple[np.ndarray, ...], captions: tuple[str, ...]) -> None:
        if captions:
            panels = tuple(caption(p, c) for p, c in zip(panels, captions, strict=True))
        frame = tile(panels)
        if self._writer is None:
            size = Size.of(frame)
            scale = min(1.0, MAX_WIDTH / size.width)
            # Both codecs want even dimensions.
            self._size = Size(max(2, int(size.width * scale) // 2 * 2),
                              max(2, int(size.height * scale) // 2 * 2))
            self._writer, self.path = open_writer(self.folder, self.fps, self._size)
        assert self._size is not None
        if Size.of(frame) != self._size:
            frame = cv2.resize(frame, self._size.dsize, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1
