"""How many frames a pass over the sources will keep, known before reading them: progress totals.

Counts come from what is cheap to ask: a folder listing, a video's frame count, a bag's index.
They are estimates where the sampling depends on timestamps (``rate_hz``) and ``None`` where
nothing cheap is known; a progress bar then runs without a total.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import cv2

from uwstego.bags import choose_camera_topic, open_bag
from uwstego.training.data.sources import ImageFolder, RosBag, Source, VideoFile

logger = logging.getLogger(__name__)


def _sampled(count: int, stride: int, rate_hz: float | None, duration_s: float | None) -> int:
    if rate_hz is not None and duration_s is not None:
        return min(count, math.floor(duration_s * rate_hz) + 1)
    return math.ceil(count / stride)


def expected_frames(source: Source) -> int | None:
    """Frames ``source`` will keep, or ``None`` when that is not known without reading it."""
    try:
        if isinstance(source, ImageFolder):
            return len(source.paths())
        if isinstance(source, VideoFile):
            cap = cv2.VideoCapture(str(source.path))
            try:
                count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                fps = cap.get(cv2.CAP_PROP_FPS)
            finally:
                cap.release()
            if count <= 0:
                return None
            return _sampled(count, source.stride, source.rate_hz, count / fps if fps > 0 else None)
        if isinstance(source, RosBag):
            bag = open_bag(source.path)
            if bag.counts is None:  # the index is lost: only reading the bag would tell
                return None
            count = bag.counts.get(choose_camera_topic(bag, source.topic), 0)
            return _sampled(count, source.stride, source.rate_hz, (bag.duration_ns or 0) / 1e9)
    except (OSError, ValueError) as exc:  # unreadable: the pass itself reports it properly
        logger.debug("no frame count for %s: %s", source.describe(), exc)
    return None


def total_frames(sources: Sequence[Source]) -> int | None:
    """The sum of :func:`expected_frames`, or ``None`` if any source's count is unknown."""
    counts = [expected_frames(s) for s in sources]
    return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]
