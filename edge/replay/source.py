"""Frames to replay: an image topic of a bag, whole or damaged, and the matching ground truth.

The bag is read through :func:`uwstego.bags.open_bag`, which reads past damage;
:attr:`FrameSource.damage` says what was lost, per topic once a topic was read to its end.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from uwstego.bags import (
    Bag,
    BagImage,
    RawMessage,
    ReadStats,
    camera_info_topic,
    choose_camera_topic,
    describe_topics,
    open_bag,
    qos_profile,
)
from uwstego.contract import OUTPUT_QOS
from uwstego.image_files import read_image_file

log = logging.getLogger(__name__)

__all__ = ["BagGroundTruth", "DirGroundTruth", "FrameSource", "camera_info_topic", "choose_topic",
           "fit_labels", "labels_from_image"]


def choose_topic(topics: dict[str, str], requested: str | None, bag: Path | Bag,
                 exclude: tuple[str, ...] = ()) -> str:
    """The camera topic to replay (the rule of :mod:`uwstego.bags.topics`), or a ValueError that
    lists the candidates. ``exclude``: topics that are not the camera (e.g. the ground truth)."""
    opened = bag if isinstance(bag, Bag) else open_bag(bag)
    if requested is not None and requested not in topics:
        raise ValueError(f"topic {requested!r} is not an image topic of {opened.path}; image "
                         f"topics: {describe_topics(topics)}")
    return choose_camera_topic(opened, requested, exclude)


class FrameSource:
    """The bag's topics and an iterator over one image topic that survives damage."""

    def __init__(self, bag: str | Path) -> None:
        self.source = open_bag(bag)
        self.bag = self.source.path
        self.damage: list[str] = self.source.damage  # the same list: it grows as reading goes
        self.all_topics = self.source.topics
        self.topics = self.source.image_topics
        self.label_topics = self.source.label_topics  # ground truth the bag declares

    def topic_timing(self, topic: str) -> tuple[int | None, int | None]:
        """(messages on ``topic``, bag duration in ns) from the index; None where unknown."""
        counts = self.source.counts
        return (None if counts is None else counts.get(topic, 0)), self.source.duration_ns

    def read(self, topic: str, every: int = 1, stats: ReadStats | None = None,
             keep_raw: bool = False, companions: Collection[str] = ()
             ) -> Iterator[BagImage | RawMessage]:
        """See :meth:`uwstego.bags.Bag.read`."""
        return self.source.read(topic, every, stats, keep_raw, companions)

    def frames(self, topic: str, every: int = 1, stats: ReadStats | None = None
               ) -> Iterator[BagImage]:
        """:meth:`read` without companions: the frames alone."""
        return self.source.images(topic, every, stats)

    def output_qos(self, namespace: str) -> dict[str, Any]:
        """The ``offered_qos`` of a replay's output bag (:class:`uwstego.bags.BagWriter`): copied
        topics offer the QoS they were recorded with, the node's topics (under ``namespace``)
        the QoS the node publishes them with."""
        offered: dict[str, Any] = dict(self.source.qos_profiles)
        offered[namespace.rstrip("/") + "/"] = [qos_profile(OUTPUT_QOS.reliability,
                                                            OUTPUT_QOS.depth)]
        return offered


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
        labels = read_image_file(path, cv2.IMREAD_UNCHANGED)
        if labels is None or labels.dtype != np.uint8 or labels.ndim != 2:
            self.unreadable.append(f"{path.name}: not a single-channel 8-bit label image")
            log.warning("ground truth %s", self.unreadable[-1])
            return None
        return labels
