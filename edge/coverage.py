"""How per-class coverage travels in a ``std_msgs/Float32MultiArray`` (one convention).

The node's ``~/coverage`` and a replay's output bag lay it out the same way: ``data`` holds one
fraction per class, and the single dimension's ``label`` lists the class names, comma-joined, so
a subscriber can tell which value is which class without the bundle. Bundles with novelty
calibration add one last value named ``unknown`` (:data:`UNKNOWN_NAME`): the fraction of pixels
beyond their cluster's novelty threshold (docs/ARCHITECTURE.md "Coverage messages").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SEPARATOR = ","
UNKNOWN_NAME = "unknown"


def coverage_names(class_names: Sequence[str], with_unknown: bool) -> list[str]:
    """The names a coverage message lists: the classes, then ``unknown`` for calibrated bundles."""
    if with_unknown and UNKNOWN_NAME in class_names:
        raise ValueError(f"a class is named {UNKNOWN_NAME!r}, the name of the unknown fraction "
                         "in coverage messages; rename the class")
    return [*class_names, UNKNOWN_NAME] if with_unknown else list(class_names)


def coverage_dimension(class_names: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments of the layout's one ``MultiArrayDimension`` (rclpy or rosbags type)."""
    for name in class_names:
        if SEPARATOR in name:
            raise ValueError(f"class name {name!r} contains {SEPARATOR!r}, which separates the "
                             "names in a coverage message; rename the class")
    n = len(class_names)
    return {"label": SEPARATOR.join(class_names), "size": n, "stride": n}
