"""Which topic of a bag is the camera: one rule for replay, training and play.

With a topic named by the user, that topic is used if it is an image topic (any, ground truth
included: naming it is the user's choice). Without one, only camera image topics qualify:

* never a topic the bag marks as ground truth (``uwstego synth`` records its label topic under
  ``custom_data[LABEL_TOPICS_KEY]``, see :class:`edge.bags.BagWriter`);
* never a topic named like labels (``label``, ``_gt``, ``ground_truth``, ``mask`` ...);
* never an Image topic whose frames are not camera pictures: single-channel 16-bit, integer or
  float encodings (depth, range, label ids), or mono8 frames with so few grey levels that they
  are label images (at most :data:`LABEL_LEVELS` distinct values in the first frame), unless
  the topic is named as the camera (``edge.contract.PREFERRED_CAMERA_TOPICS``): frames there
  that cannot be used are skipped and counted, as on any camera topic.

An Image topic and its ``/compressed`` sibling are one camera (the raw one is taken). If more
than one camera remains, the choice stops with a message listing them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import numpy as np

from edge.bags.messages import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    describe_topics,
    typestore,
)
from edge.contract import PREFERRED_CAMERA_TOPICS

if TYPE_CHECKING:
    from edge.bags.bag import Bag

LABEL_TOPICS_KEY = "uwstego.label_topics"  # custom_data key: comma-separated topics
LABEL_LEVELS = 32
_LABEL_NAME = re.compile(r"label|(^|[/_])gt($|[/_])|ground_?truth|mask|segmentation|classes",
                         re.IGNORECASE)
_CAMERA_ENCODINGS = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "uyvy", "yuyv",
                     "yuv422_yuy2", "nv21", "nv24", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
                     "bayer_grbg8", "rgb16", "bgr16", "rgba16", "bgra16"}


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
        first = bag.first_message(topic)
        if first is not None:
            try:
                msg = typestore().deserialize_cdr(first.data, first.msgtype)
            except Exception:  # unreadable first frame: judged by its name alone
                return None
            encoding = str(msg.encoding)
            if encoding not in _CAMERA_ENCODINGS:
                return f"{encoding} frames (depth, range or label ids, not a picture)"
            if encoding == "mono8" and np.unique(np.asarray(msg.data)).size <= LABEL_LEVELS:
                return f"mono8 frames with at most {LABEL_LEVELS} grey levels (label images)"
    return None


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
        return requested
    cameras = camera_topics(bag, exclude)
    if len(cameras) == 1:
        return next(iter(cameras))
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
