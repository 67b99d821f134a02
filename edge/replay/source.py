"""Frames to replay: an image topic of a bag, whole or damaged, and the matching ground truth.

An intact bag is read through :func:`edge.bags.iter_bag_images` (indexed, in time order). When
``rosbags`` cannot open it, or fails part-way, the frames are read (or the rest is skipped) with
:class:`~edge.replay.salvage.SalvageReader`, and :attr:`FrameSource.damage` says what was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError

from edge.bags import (
    IMAGE_TYPES,
    BagImage,
    ReadStats,
    iter_bag_images,
    list_image_topics,
    typestore,
)
from edge.replay.salvage import SalvageReader
from edge.rosimage import ImageDecodeError, decode_image

log = logging.getLogger(__name__)

PREFERRED_TOPICS = ("/camera/image_raw", "/camera/image_raw/compressed")
IGNORE = 255
def _describe(topics: dict[str, str]) -> str:
    return ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"


def choose_topic(topics: dict[str, str], requested: str | None, bag: Path,
                 exclude: tuple[str, ...] = ()) -> str:
    """The image topic to replay, or a ValueError that lists the bag's image topics."""
    if requested is not None:
        if requested not in topics:
            raise ValueError(f"topic {requested!r} is not an image topic of {bag}; image topics: "
                             f"{_describe(topics)}")
        return requested
    candidates = {t: m for t, m in topics.items() if t not in exclude}
    for topic in PREFERRED_TOPICS:
        if topic in candidates:
            return topic
    if len(candidates) == 1:
        return next(iter(candidates))
    raise ValueError(f"choose the camera topic of {bag} with --topic; image topics: "
                     f"{_describe(topics)}")


class FrameSource:
    """The bag's image topics and an iterator over one of them that survives damage."""

    def __init__(self, bag: str | Path) -> None:
        self.bag = Path(bag)
        if not self.bag.exists():
            raise FileNotFoundError(f"bag not found: {self.bag}")
        self.damage: list[str] = []
        self.salvage: SalvageReader | None = None
        try:
            self.topics = list_image_topics(self.bag)
        except (ValueError, AnyReaderError) as exc:
            try:
                self.salvage = SalvageReader(self.bag)
            except ValueError:
                raise ValueError(f"{self.bag} is not a readable bag: {exc}") from exc
            self.damage.append(f"the bag's index cannot be read ({exc}); reading its records "
                               "in order up to the damage")
            log.warning("%s: %s", self.bag, self.damage[-1])
            self.topics = {t: m for t, m in self.salvage.topics().items() if m in IMAGE_TYPES}

    def topic_timing(self, topic: str) -> tuple[int | None, int | None]:
        """(messages on ``topic``, bag duration in ns) from the index; None where unknown."""
        if self.salvage is not None:
            return None, None
        try:
            with AnyReader([self.bag], default_typestore=typestore()) as reader:
                count = sum(c.msgcount for c in reader.connections if c.topic == topic)
                return count, int(reader.duration)
        except (AnyReaderError, ValueError, OSError):
            return None, None

    def frames(self, topic: str, every: int = 1, stats: ReadStats | None = None
               ) -> Iterator[BagImage]:
        """Every ``every``-th frame of ``topic``, up to the first damage, which is recorded.

        An indexed read that fails part-way (rosbags reads a whole chunk before yielding any of
        it) goes on record by record from the frame after the last good one.
        """
        stats = stats if stats is not None else ReadStats()
        if topic not in self.topics:
            raise ValueError(f"topic {topic!r} is not an image topic of {self.bag}; image "
                             f"topics: {_describe(self.topics)}")
        last = -1
        if self.salvage is None:
            images = iter_bag_images(self.bag, topic, every=every, stats=stats)
            while True:
                try:
                    image = next(images)
                except StopIteration:
                    return
                except Exception as exc:  # whatever a damaged file makes rosbags raise
                    self.damage.append(f"{topic}: indexed reading failed after message {last} "
                                       f"({type(exc).__name__}: {exc}); reading on record by "
                                       "record")
                    log.warning("%s: %s", self.bag, self.damage[-1])
                    break
                last = image.index
                yield image
        yield from self._salvaged(topic, every, stats, after=last)

    def _salvaged(self, topic: str, every: int, stats: ReadStats,
                  after: int) -> Iterator[BagImage]:
        salvage = self.salvage or SalvageReader(self.bag)
        store = typestore()
        try:
            for index, raw in enumerate(salvage.messages({topic})):
                if index <= after or index % every:
                    continue
                stats.read += 1
                try:
                    msg = store.deserialize_cdr(raw.data, raw.msgtype)
                    rgb = decode_image(msg)
                except ImageDecodeError as exc:
                    stats.skip(index, str(exc))
                    continue
                except Exception as exc:  # malformed CDR only skips a frame
                    stats.skip(index, f"undeserialisable message: {type(exc).__name__}: {exc}")
                    continue
                stats.yielded += 1
                stamp = msg.header.stamp
                yield BagImage(index=index, t_ns=raw.t_ns,
                               stamp_ns=int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
                               frame_id=str(msg.header.frame_id), rgb=rgb)
        finally:
            for item in salvage.damage:
                if item not in self.damage:
                    self.damage.append(item)


def labels_from_image(rgb: np.ndarray) -> np.ndarray:
    """A mono8 label image comes out of the decoder as grey RGB: take one channel back."""
    return np.ascontiguousarray(rgb[..., 0])


def fit_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Ground truth at another resolution than the frame is resized nearest (ids stay ids)."""
    if labels.shape == shape:
        return labels
    return cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


class BagGroundTruth:
    """Ground-truth label images on a topic of the same bag, matched to frames by header stamp.

    Both topics are read in log-time order; truth messages up to ``window_ns`` after a frame's
    log time are looked ahead, so truth recorded slightly after its frame still matches.
    """

    def __init__(self, source: FrameSource, topic: str, window_ns: int = 1_000_000_000) -> None:
        if topic not in source.topics:
            raise ValueError(f"ground-truth topic {topic!r} is not an image topic of "
                             f"{source.bag}; image topics: {_describe(source.topics)}")
        self.topic = topic
        self.stats = ReadStats()
        self._iter = source.frames(topic, stats=self.stats)
        self._pending: dict[int, tuple[int, np.ndarray]] = {}  # stamp -> (log time, labels)
        self._done = False
        self.window_ns = window_ns

    def lookup(self, frame: BagImage) -> np.ndarray | None:
        while not self._done and (not self._pending or
                                  max(t for t, _ in self._pending.values())
                                  <= frame.t_ns + self.window_ns):
            item = next(self._iter, None)
            if item is None:
                self._done = True
                break
            self._pending[item.stamp_ns] = (item.t_ns, labels_from_image(item.rgb))
        found = self._pending.pop(frame.stamp_ns, None)
        horizon = frame.t_ns - self.window_ns
        for stamp in [s for s, (t, _) in self._pending.items() if t < horizon]:
            del self._pending[stamp]
        return None if found is None else found[1]


class DirGroundTruth:
    """Ground-truth PNGs in a folder, named by the frame's header stamp in nanoseconds
    (``1700000000123456789.png``) or by its index on the topic (``000042.png``)."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"ground-truth folder not found: {folder}")
        self.files: dict[int, Path] = {}
        for path in sorted(folder.glob("*.png")):
            if path.stem.isdigit():
                self.files[int(path.stem)] = path
        if not self.files:
            raise ValueError(f"{folder} holds no label PNGs named by stamp or frame index "
                             "(e.g. 000042.png)")
        self.unreadable: list[str] = []

    def lookup(self, frame: BagImage) -> np.ndarray | None:
        path = self.files.get(frame.stamp_ns, self.files.get(frame.index))
        if path is None:
            return None
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.dtype != np.uint8 or labels.ndim != 2:
            self.unreadable.append(f"{path.name}: not a single-channel 8-bit label image")
            log.warning("ground truth %s", self.unreadable[-1])
            return None
        return labels
