"""What a bag holds, as the rest of the product sees it: stored messages and decoded frames.

Stored messages stay CDR bytes (:class:`RawMessage`) so that they can be copied into another bag
or published byte for byte; frames are decoded only when an image is wanted (:class:`BagImage`).
A frame that cannot be deserialised or decoded is skipped, logged and counted in a
:class:`ReadStats`; it never ends a read.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from uwstego.rosimage import ImageDecodeError, decode_image

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
FLOAT32_ARRAY_TYPE = "std_msgs/msg/Float32MultiArray"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE, CAMERA_INFO_TYPE)


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The Humble typestore: its Image, CompressedImage and CameraInfo match newer distros."""
    return get_typestore(Stores.ROS2_HUMBLE)


@dataclass(frozen=True)
class RawMessage:
    """One stored message, still serialised (CDR)."""

    topic: str
    msgtype: str
    t_ns: int  # log (receive) time
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class BagImage:
    index: int          # position on the topic within [start_ns, stop_ns), counting bad frames
    t_ns: int           # log (receive) time
    stamp_ns: int       # header stamp
    frame_id: str
    rgb: np.ndarray = field(repr=False)  # HxWx3 uint8, owned by the caller
    msgtype: str = IMAGE_TYPE
    # The stored message's CDR, only when asked for (``keep_raw``): it doubles the memory.
    raw: bytes | None = field(default=None, repr=False)


@dataclass
class ReadStats:
    """What an image read did: pass one in and read it during or after the iteration."""

    read: int = 0
    yielded: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def skip(self, index: int, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] += 1
        log.warning("skipping frame %d: %s", index, reason)


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def decode_bag_image(msg: RawMessage, index: int, stats: ReadStats,
                     keep_raw: bool = False) -> BagImage | None:
    """The frame in a stored Image or CompressedImage, or None (skipped, counted in ``stats``)."""
    stats.read += 1
    try:
        ros = typestore().deserialize_cdr(msg.data, msg.msgtype)
    except Exception as exc:  # any malformed CDR must only skip its frame
        stats.skip(index, f"undeserialisable message: {type(exc).__name__}: {exc}")
        return None
    try:
        rgb = decode_image(ros)
    except ImageDecodeError as exc:
        stats.skip(index, str(exc))
        return None
    stats.yielded += 1
    return BagImage(index=index, t_ns=msg.t_ns, stamp_ns=_stamp_ns(ros.header),
                    frame_id=str(ros.header.frame_id), rgb=rgb, msgtype=msg.msgtype,
                    raw=msg.data if keep_raw else None)


def describe_topics(topics: dict[str, str]) -> str:
    """``/a (Image), /b (CompressedImage)``, for error messages."""
    return ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"
