"""The replay's reading stage: frames decoded ahead of the model, each with its ground truth
and the stored messages that travel with it into the output bag."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from uwstego.bags import BagImage, RawMessage, ReadStats
from uwstego.replay.source import BagGroundTruth, DirGroundTruth, FrameSource, fit_labels
from uwstego.segmenter import Segmentation


@dataclass
class Work:
    """One frame on its way through the pipeline."""

    frame: BagImage
    truth: np.ndarray | None
    companions: list[RawMessage] = field(default_factory=list)  # copied into the output bag
    segs: list[Segmentation] = field(default_factory=list)  # one per model; empty if refused


def produce(source: FrameSource, topic: str, every: int, stats: ReadStats,
            truth: BagGroundTruth | DirGroundTruth | None, keep_raw: bool,
            info_topic: str | None) -> Iterator[Work]:
    """Every ``every``-th frame of ``topic`` (counted in ``stats``) as a :class:`Work`.

    Companion messages (camera_info) ride with the frame before them, those ahead of the first
    frame with the first, so each work is held until the next frame is read.
    """
    held: Work | None = None
    ahead: list[RawMessage] = []
    for item in source.read(topic, every, stats, keep_raw=keep_raw,
                            companions=(info_topic,) if info_topic else ()):
        if isinstance(item, RawMessage):
            (held.companions if held is not None else ahead).append(item)
            continue
        if held is not None:
            yield held
        labels = None
        if truth is not None:
            labels = truth.lookup(item)
            if labels is not None:
                labels = fit_labels(labels, item.rgb.shape[:2])
        held, ahead = Work(item, labels, companions=ahead), []
    if held is not None:
        yield held
