"""Footage that is not a bag: a video file or a folder of images, replayed like a bag's camera.

It offers what the replay reads of a bag (:class:`uwstego.replay.source.FrameSource`): one image
topic, :data:`FOOTAGE_TOPIC`, whose frames are the video's frames or the folder's images in file
name order. Frame times come from the video's frame rate, or from ``fps`` (``--fps``) for a
folder (and for a video whose header gives no rate); they start at 0. Frames are decoded here
and carry no stored message, so an output bag holds them as rgb8 Images. An image that does not
decode is skipped and counted, as a bad frame of a bag is.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from uwstego.bags import BagImage, ReadStats
from uwstego.bags.messages import IMAGE_TYPE
from uwstego.contract import IMAGE_SUFFIXES, IMAGE_TOPIC, SYNTH_DIVE_FILE, VIDEO_SUFFIXES

log = logging.getLogger(__name__)

FOOTAGE_TOPIC = IMAGE_TOPIC  # the frames' topic in the summary and the output bag
DEFAULT_FPS = 10.0


def is_footage(path: Path) -> bool:
    """A video file, or a folder that is not a bag (no ``metadata.yaml``)."""
    if path.is_dir():
        bag_files = ("metadata.yaml", SYNTH_DIVE_FILE, "*.db3", "*.mcap")
        return not any(any(path.glob(pattern)) for pattern in bag_files)
    return path.suffix.lower() in VIDEO_SUFFIXES


class Footage:
    """A video or an image folder as the replay's frame source; see the module."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.bag = Path(path)
        if fps is not None and not fps > 0:
            raise ValueError(f"--fps must be > 0, got {fps}")
        self.damage: list[str] = []
        self.topics = {FOOTAGE_TOPIC: IMAGE_TYPE}
        self.all_topics = dict(self.topics)
        self.label_topics: tuple[str, ...] = ()
        self.files: list[Path] = []
        if self.bag.is_dir():
            self.files = sorted(p for p in self.bag.iterdir()
                                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.files:
                raise ValueError(f"{self.bag} holds no images ({', '.join(IMAGE_SUFFIXES)}) "
                                 "and is not a bag (no metadata.yaml)")
            self.count: int | None = len(self.files)
            self.fps = fps or DEFAULT_FPS
            if fps is None:
                log.info("%s: %d images, timed at %g frames/s (give --fps for the camera's rate)",
                         self.bag, self.count, self.fps)
        else:
            cap = self._open()
            try:
                rate, frames = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            finally:
                cap.release()
            self.count = frames if frames > 0 else None
            self.fps = fps or (rate if rate > 0 else DEFAULT_FPS)
            if fps is None and not rate > 0:
                log.warning("%s gives no frame rate: timed at %g frames/s (give --fps)",
                            self.bag, self.fps)

    def _open(self) -> cv2.VideoCapture:
        if not self.bag.is_file():
            raise FileNotFoundError(f"video not found: {self.bag}")
        cap = cv2.VideoCapture(str(self.bag))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"{self.bag} cannot be opened as a video (unknown codec or corrupt "
                             "file)")
        return cap

    def t_ns(self, index: int) -> int:
        return round(index * 1e9 / self.fps)

    def topic_timing(self, _topic: str) -> tuple[int | None, int | None]:
        """(frames, duration in ns), as :meth:`uwstego.replay.source.FrameSource.topic_timing`."""
        if self.count is None:
            return None, None
        return self.count, self.t_ns(self.count - 1)

    def output_qos(self, _namespace: str) -> dict[str, Any]:
        return {}  # nothing was recorded: the output bag offers its defaults

    def read(self, topic: str, every: int = 1, stats: ReadStats | None = None,
             keep_raw: bool = False, companions: Collection[str] = ()) -> Iterator[BagImage]:
        """Every ``every``-th frame; ``keep_raw`` and ``companions`` have nothing to keep."""
        return self.frames(topic, every, stats)

    def frames(self, _topic: str, every: int = 1, stats: ReadStats | None = None
               ) -> Iterator[BagImage]:
        stats = stats if stats is not None else ReadStats()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if self.files:
            for index in range(0, len(self.files), every):
                image = self._image(index, stats)
                if image is not None:
                    yield image
            return
        cap = self._open()
        try:
            index = 0
            while cap.grab():
                if index % every == 0:
                    stats.read += 1
                    ok, bgr = cap.retrieve()
                    if ok and bgr is not None:
                        stats.yielded += 1
                        yield self._frame(index, bgr)
                    else:
                        stats.skip(index, "undecodable video frame")
                index += 1
        finally:
            cap.release()

    def frame_at(self, index: int) -> BagImage | None:
        """Frame ``index`` read again (for the report's frames to look at)."""
        if self.files:
            return self._image(index, ReadStats()) if index < len(self.files) else None
        cap = self._open()
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = cap.read()
        finally:
            cap.release()
        return self._frame(index, bgr) if ok and bgr is not None else None

    def _image(self, index: int, stats: ReadStats) -> BagImage | None:
        path = self.files[index]
        stats.read += 1
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            stats.skip(index, f"{path.name}: not a decodable image")
            return None
        stats.yielded += 1
        return self._frame(index, bgr)

    def _frame(self, index: int, bgr: np.ndarray) -> BagImage:
        t = self.t_ns(index)
        return BagImage(index=index, t_ns=t, stamp_ns=t, frame_id=self.bag.stem,
                        rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
