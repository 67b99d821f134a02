"""The output bag of a replay: the input frames plus what the node would have published.

The input topic (and the camera's CameraInfo) are copied byte for byte from the input bag. The
node's topics are named like the node's (``/uwstego_segmentation/labels`` ...) and laid out the
same way (labels mono8, overlay rgb8, confidence 32FC1, coverage as in :mod:`edge.coverage`),
stamped with the input frame's header and log time, so tools set up for the live node read a
replayed bag unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from edge.bags import BagImage, BagWriter, RawMessage
from edge.contract import NODE_NAME
from edge.segmenter import Segmentation

NODE_NAMESPACE = f"/{NODE_NAME}"
COMPARE_SUFFIX = "compare"


class OutputTopics:
    """Writes one replayed frame and its segmentation(s) into an open :class:`BagWriter`."""

    def __init__(self, writer: BagWriter, input_topic: str, class_names: Sequence[str],
                 compare_names: Sequence[str] | None = None,
                 namespace: str = NODE_NAMESPACE) -> None:
        self.writer = writer
        self.input_topic = input_topic
        self.namespace = namespace.rstrip("/")
        self.class_names = list(class_names)
        self.compare_names = list(compare_names) if compare_names is not None else None

    def write(self, frame: BagImage, seg: Segmentation, coverage: np.ndarray,
              overlay_rgb: np.ndarray, compare: Segmentation | None = None,
              compare_coverage: np.ndarray | None = None) -> None:
        w, t = self.writer, frame.t_ns
        if frame.raw is None:
            raise ValueError(f"frame {frame.index} was read without its stored message "
                             "(keep_raw); the input topic cannot be copied")
        w.write_raw(self.input_topic, t, frame.msgtype, frame.raw)
        self._segmentation(self.namespace, frame, seg, coverage, self.class_names)
        w.write_image(f"{self.namespace}/overlay", t, overlay_rgb, "rgb8",
                      stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
        if compare is not None and compare_coverage is not None and self.compare_names:
            self._segmentation(f"{self.namespace}/{COMPARE_SUFFIX}", frame, compare,
                               compare_coverage, self.compare_names)

    def copy(self, messages: Iterable[RawMessage]) -> None:
        """Stored messages of other topics (the camera's CameraInfo), unchanged."""
        for msg in messages:
            self.writer.write_raw(msg.topic, msg.t_ns, msg.msgtype, msg.data)

    def _segmentation(self, ns: str, frame: BagImage, seg: Segmentation, coverage: np.ndarray,
                      names: Sequence[str]) -> None:
        w, t = self.writer, frame.t_ns
        w.write_image(f"{ns}/labels", t, seg.labels, "mono8", stamp_ns=frame.stamp_ns,
                      frame_id=frame.frame_id)
        w.write_image(f"{ns}/confidence", t, seg.confidence, "32FC1", stamp_ns=frame.stamp_ns,
                      frame_id=frame.frame_id)
        w.write_coverage(f"{ns}/coverage", t, coverage, names)
