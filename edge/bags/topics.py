"""Which topic of a bag is the camera: one rule for replay, training and play.

With a topic named by the user, that topic is used if it is an image topic (any, ground truth
included: naming it is the user's choice). Without one, only camera image topics qualify:

* never a topic the bag marks as ground truth (``uwstego synth`` records its label topic in the
  bag's metadata, see :mod:`uwstego.bags.layout`);
* never a topic named like labels (``label``, ``_gt``, ``ground_truth``, ``mask`` ...);
* never an Image topic whose frames are not camera pictures the decoder reads: an encoding
  outside :data:`uwstego.rosimage.SUPPORTED_ENCODINGS` (integer or float encodings are depth, range
  or label ids; others, such as ``nv21``, are pictures that cannot be decoded), or mono8 frames
  or mono16 frames with so few grey levels that they are label images (at most
  :data:`LABEL_LEVELS` distinct values in the first frame), unless the topic is named as the camera
  (``uwstego.contract.PREFERRED_CAMERA_TOPICS``).

An Image topic and its ``/compressed`` sibling are one camera (the raw one is taken). If more
than one camera remains, the choice stops with a message listing them. The chosen topic (or the
one the user named) is refused with one line when its first frame's encoding cannot be decoded,
rather than every frame being skipped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from uwstego.bags.bag import Bag
from uwstego.bags.messages import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    describe_topics,
    typestore,
)
from uwstego.contract import PREFERRED_CAMERA_TOPICS
from uwstego.rosimage import SUPPORTED_ENCODINGS

LABEL_LEVELS = 32
_LABEL_NAME = re.compile(r"label|(^|[/_])gt($|[/_])|ground_?truth|mask|segmentation|classes",
                         re.IGNORECASE)
_MONO = {"mono8": np.uint8, "mono16": np.uint16}  # grey encodings that may hold label ids
_NUMERIC_ENCODING = re.compile(r"^\d+[USF]C\d+$")  # 16UC1, 32FC1 ...: values, not a picture


def label_like_name(topic: str) -> bool:
    return bool(_LABEL_NAME.search(topic))


def why_not_camera(bag: Bag, topic: str) -> str | None:
    """Why ``topic`` is not a camera image topic of ``bag``, or None if it is one."""
    msgtype = bag.topics.get(topic)
    if msgtype not in IMAGE_TYPES:
        return "not an image topic"
    if topic in bag.label_topics:
        return "marked as ground truth in the bag"
    if label_like_name(topic):
        return "named like a label topic"
    if msgtype == IMAGE_TYPE and topic not in PREFERRED_CAMERA_TOPICS:
        msg = _first_frame(bag, topic)
        if msg is None:  # no readable first frame: judged by its name alone
            return None
        encoding = str(msg.encoding)
        if _NUMERIC_ENCODING.match(encoding):
            return f"{encoding} frames (depth, range or label ids, not a picture)"
        if encoding not in SUPPORTED_ENCODINGS:
            return _undecodable(encoding)
        if encoding in _MONO and _levels(msg.data, _MONO[encoding]) <= LABEL_LEVELS:
            return f"{encoding} frames with at most {LABEL_LEVELS} grey levels (label images)"
    return None


def _levels(data: Any, dtype: type) -> int:
    """Distinct values of a grey frame's pixels."""
    raw = np.asarray(data, dtype=np.uint8).reshape(-1)
    width = np.dtype(dtype).itemsize
    return int(np.unique(raw[:raw.size - raw.size % width].view(dtype)).size)


def _first_frame(bag: Bag, topic: str) -> Any | None:
    """The topic's first Image message, deserialised; None if there is none or it is unreadable."""
    first = bag.first_message(topic)
    if first is None:
        return None
    try:
        return typestore().deserialize_cdr(first.data, first.msgtype)
    except Exception:  # any malformed CDR: the frames say nothing about the topic
        return None


def _undecodable(encoding: str) -> str:
    return (f"{encoding} frames, an encoding the decoder cannot read (supported: "
            f"{', '.join(SUPPORTED_ENCODINGS)})")


def _check_decodable(bag: Bag, topic: str) -> str:
    """``topic``, or a ValueError naming it and its encoding when its frames cannot be decoded."""
    msg = _first_frame(bag, topic) if bag.topics.get(topic) == IMAGE_TYPE else None
    if msg is not None and str(msg.encoding) not in SUPPORTED_ENCODINGS:
        raise ValueError(f"camera topic {topic} of {bag.path} holds "
                         f"{_undecodable(str(msg.encoding))}; convert the recording or name "
                         "another topic with --topic")
    return topic


def camera_topics(bag: Bag, exclude: Collection[str] = ()) -> dict[str, str]:
    """The camera image topics of ``bag`` (an Image topic stands for its /compressed sibling),
    less ``exclude``."""
    cameras = {t: m for t, m in bag.topics.items()
               if t not in exclude and why_not_camera(bag, t) is None}
    return {t: m for t, m in cameras.items()
            if not (m == COMPRESSED_TYPE and t.rsplit("/", 1)[0] in cameras)}


def choose_camera_topic(bag: Bag, requested: str | None = None,
                        exclude: Collection[str] = ()) -> str:
    """The camera topic to read (see the module text), or a ValueError listing the choices."""
    images = bag.image_topics
    if requested is not None:
        if requested not in images:
            raise ValueError(f"topic {requested!r} is not an image topic of {bag.path}; image "
                             f"topics: {describe_topics(images)}")
        return _check_decodable(bag, requested)
    cameras = camera_topics(bag, exclude)
    if len(cameras) == 1:
        return _check_decodable(bag, next(iter(cameras)))
    if not cameras:
        others = "; ".join(f"{t}: {why_not_camera(bag, t)}" for t in sorted(images))
        raise ValueError(f"{bag.path} has no camera image topic"
                         + (f" ({others}); name one with --topic" if images else ""))
    raise ValueError(f"{bag.path} has {len(cameras)} camera topics; choose one with --topic: "
                     f"{describe_topics(cameras)}")


def camera_info_topic(image_topic: str, image_type: str, all_topics: Mapping[str, str]
                      ) -> str | None:
    """The CameraInfo topic of a camera: ``<ns>/camera_info`` next to its image topic (the
    image_transport rule, ``/compressed`` dropped first), else the bag's only CameraInfo topic."""
    base = image_topic.rsplit("/", 1)[0] if image_type == COMPRESSED_TYPE else image_topic
    sibling = f"{base.rsplit('/', 1)[0]}/camera_info"
    infos = [t for t, m in all_topics.items() if m == CAMERA_INFO_TYPE]
    if sibling in infos:
        return sibling
    return infos[0] if len(infos) == 1 else None
