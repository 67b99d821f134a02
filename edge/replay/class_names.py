"""Ground-truth class names carried in a bag's metadata.

``uwstego synth`` knows what its label ids mean; it records them in the bag's
``metadata.yaml`` ``custom_data`` (rosbag2's free key/value store, kept by ``ros2 bag`` tools)
under :data:`CLASS_NAMES_KEY`, as JSON ``{label topic: [name of id 0, name of id 1, ...]}``.
The replay reads them back, so that its report names the ground truth's classes without
``--gt-names``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from edge.bags import BagWriter

log = logging.getLogger(__name__)

CLASS_NAMES_KEY = "uwstego.class_names"


def store_class_names(bag: BagWriter, names_by_topic: Mapping[str, Sequence[str]]) -> None:
    """Record the class names of label topics in an open bag's metadata (written at close)."""
    if bag._writer is None:
        raise RuntimeError("BagWriter is not open; use it as a context manager")
    bag._writer.set_custom_data(CLASS_NAMES_KEY, json.dumps(
        {topic: list(names) for topic, names in names_by_topic.items()}))


def bag_class_names(bag_path: str | Path, topic: str) -> tuple[str, ...] | None:
    """The class names the bag's metadata gives for ``topic``, or None (no metadata, no entry
    for the topic, or an entry that is not a list of names)."""
    # metadata.yaml itself: rosbags' Reader keeps custom_data on its storage object, which
    # differs between rosbags versions, and opening the storage is not needed for one key.
    try:
        doc = yaml.safe_load((Path(bag_path) / "metadata.yaml").read_text())
        custom = doc["rosbag2_bagfile_information"].get("custom_data") or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        log.debug("no class names in %s: %s", bag_path, exc)
        return None
    try:
        names = json.loads(str(custom.get(CLASS_NAMES_KEY, "{}"))).get(topic)
    except (json.JSONDecodeError, AttributeError):
        log.warning("%s: ignoring malformed %s in the bag's metadata", bag_path, CLASS_NAMES_KEY)
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)
