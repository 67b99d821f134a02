"""Frames to replay: an image topic of a bag, whole or damaged, and the matching ground truth.

The bag is read through :func:`edge.replay.salvage.read_messages`: from its index where it can be
read, record by record up to the damage where it cannot, and :attr:`FrameSource.damage` says
what was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.bags import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPES,
    BagImage,
    BagInfo,
    RawMessage,
    ReadStats,
    bag_info,
    decode_bag_image,
    describe_topics,
)
from edge.contract import PREFERRED_CAMERA_TOPICS
from edge.replay.salvage import SalvageReader, read_messages

log = logging.getLogger(__name__)



def choose_topic(topics: dict[str, str], requested: str | None, bag: Path,
                 exclude: tuple[str, ...] = ()) -> str:
    """The image topic to replay, or a ValueError that lists the bag's image topics."""
    if requested is not None:
        if requested not in topics:
            raise ValueError(f"topic {requested!r} is not an image topic of {bag}; image topics: "
                             f"{describe_topics(topics)}")
        return requested
    candidates = {t: m for t, m in topics.items() if t not in exclude}
    for topic in PREFERRED_CAMERA_TOPICS:
        if topic in candidates:
            return topic
    if len(candidates) == 1:
        return next(iter(candidates))
    raise ValueError(f"choose the camera topic of {bag} with --topic; image topics: "
                     f"{describe_topics(topics)}")


def camera_info_topic(image_topic: str, image_type: str, all_topics: dict[str, str]) -> str | None:
    """The CameraInfo topic of a camera: ``<ns>/camera_info`` next to its image topic (the
    image_transport rule, ``/compressed`` dropped first), else the bag's only CameraInfo topic."""
    base = image_topic.rsplit("/", 1)[0] if image_type == COMPRESSED_TYPE else image_topic
    sibling = f"{base.rsplit('/', 1)[0]}/camera_info"
    infos = [t for t, m in all_topics.items() if m == CAMERA_INFO_TYPE]
    if sibling in infos:
        return sibling
    return infos[0] if len(infos) == 1 else None


class FrameSource:
    """The bag's topics and an iterator over one image topic that survives damage."""

    def __init__(self, bag: str | Path) -> None:
        self.bag = Path(bag)
        if not self.bag.exists():
            raise FileNotFoundError(f"bag not found: {self.bag}")
        self.damage: list[str] = []
        self.info: BagInfo | None = None  # None: the index is unreadable
        try:
            self.info = bag_info(self.bag)
            self.all_topics = self.info.topics
        except ValueError as exc:
            try:
                salvage = SalvageReader(self.bag)
            except ValueError:
                raise ValueError(f"{self.bag} is not a readable bag: {exc}") from exc
            self.damage.append(f"the bag's index cannot be read ({exc}); reading its records "
                               "in order up to the damage")
            log.warning("%s: %s", self.bag, self.damage[-1])
            self.all_topics = salvage.topics()
        self.topics = {t: m for t, m in self.all_topics.items() if m in IMAGE_TYPES}

    def topic_timing(self, topic: str) -> tuple[int | None, int | None]:
        """(messages on ``topic``, bag duration in ns) from the index; None where unknown."""
        if self.info is None:
            return None, None
        return self.info.counts.get(topic, 0), self.info.duration_ns

    def read(self, topic: str, every: int = 1, stats: ReadStats | None = None,
             keep_raw: bool = False, companions: Collection[str] = ()
             ) -> Iterator[BagImage | RawMessage]:
        """Every ``every``-th frame of ``topic``, up to the first damage, which is recorded;
        interleaved in log-time order with every stored message of the ``companions`` topics
        (read in the same pass). ``keep_raw``: frames carry their stored message too."""
        stats = stats if stats is not None else ReadStats()
        if topic not in self.topics:
            raise ValueError(f"topic {topic!r} is not an image topic of {self.bag}; image "
                             f"topics: {describe_topics(self.topics)}")
        index = -1
        for msg in read_messages(self.bag, {topic, *companions}, self.damage,
                                 indexed=self.info is not None):
            if msg.topic != topic:
                yield msg
                continue
            index += 1
            if index % every:
                continue
            image = decode_bag_image(msg, index, stats, keep_raw)
            if image is not None:
                yield image

    def frames(self, topic: str, every: int = 1, stats: ReadStats | None = None
               ) -> Iterator[BagImage]:
        """:meth:`read` without companions: the frames alone."""
        for item in self.read(topic, every, stats):
            if isinstance(item, BagImage):
                yield item


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
                             f"{source.bag}; image topics: {describe_topics(source.topics)}")
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
