"""Ground-truth class names carried in a bag's metadata.

``uwstego synth`` knows what its label ids mean; it records them in the bag it writes
(:meth:`uwstego.bags.BagWriter.set_class_names`, kept by the ``ros2 bag`` tools), and the replay
reads
them back (:attr:`uwstego.bags.Bag.class_names`), so that its report names the ground truth's
classes without ``--gt-names``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from uwstego.bags import open_bag

log = logging.getLogger(__name__)


def bag_class_names(bag_path: str | Path, topic: str) -> tuple[str, ...] | None:
    """The class names the bag's metadata gives for ``topic``, or None (no metadata, no entry
    for the topic, or an entry that is not a list of names)."""
    try:
        return open_bag(bag_path).class_names.get(topic)
    except (OSError, ValueError) as exc:
        log.debug("no class names in %s: %s", bag_path, exc)
        return None
