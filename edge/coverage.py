"""How per-class coverage travels in a ``std_msgs/Float32MultiArray`` (one convention).

The node's ``~/coverage`` and a replay's output bag lay it out the same way: ``data`` holds one
fraction per class, and the single dimension's ``label`` lists the class names, comma-joined, so
a subscriber can tell which value is which class without the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SEPARATOR = ","


def coverage_dimension(class_names: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments of the layout's one ``MultiArrayDimension`` (rclpy or rosbags type)."""
    for name in class_names:
        if SEPARATOR in name:
            raise ValueError(f"class name {name!r} contains {SEPARATOR!r}, which separates the "
                             "names in a coverage message; rename the class")
    n = len(class_names)
    return {"label": SEPARATOR.join(class_names), "size": n, "stride": n}


def coverage_class_names(label: str) -> list[str]:
    """The class names of a coverage message, back from its dimension's ``label``."""
    return label.split(SEPARATOR) if label else []
