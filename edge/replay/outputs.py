"""The output bag of a replay: the input frames plus what the node would have published.

Topics are named like the node's (``/uwstego_segmentation/labels`` ...) and laid out the same way
(labels mono8, overlay rgb8, confidence 32FC1, coverage as a Float32MultiArray whose one
dimension lists the class names), stamped with the input frame's header and log time, so tools
set up for the live node read a replayed bag unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.bags import COMPRESSED_TYPE, FLOAT32_ARRAY_TYPE, IMAGE_TYPE, BagImage, BagWriter
from edge.segmenter import Segmentation

NODE_NAMESPACE = "/uwstego_segmentation"
COMPARE_SUFFIX = "compare"


class OutputTopics:
    """Writes one replayed frame and its segmentation(s) into an open :class:`BagWriter`."""

    def __init__(self, writer: BagWriter, input_topic: str, input_type: str,
                 class_names: Sequence[str], compare_names: Sequence[str] | None = None,
                 namespace: str = NODE_NAMESPACE) -> None:
        self.writer = writer
        self.input_topic = input_topic
        self.compressed = input_type == COMPRESSED_TYPE
        self.namespace = namespace.rstrip("/")
        self.class_names = list(class_names)
        self.compare_names = list(compare_names) if compare_names is not None else None

    def write(self, frame: BagImage, seg: Segmentation, coverage: np.ndarray,
              overlay_rgb: np.ndarray, compare: Segmentation | None = None,
              compare_coverage: np.ndarray | None = None) -> None:
        w, t = self.writer, frame.t_ns
        stamp = {"stamp_ns": frame.stamp_ns, "frame_id": frame.frame_id}
        # The input goes back on its own topic and type; a compressed frame is re-encoded.
        if self.compressed:
            w.write_compressed(self.input_topic, t, frame.rgb, **stamp)
        else:
            w.write_image(self.input_topic, t, frame.rgb, "rgb8", **stamp)
        self._segmentation(self.namespace, frame, seg, coverage, self.class_names)
        w.write_image(f"{self.namespace}/overlay", t, overlay_rgb, "rgb8", **stamp)
        if compare is not None and compare_coverage is not None and self.compare_names:
            self._segmentation(f"{self.namespace}/{COMPARE_SUFFIX}", frame, compare,
                               compare_coverage, self.compare_names)

    def _segmentation(self, ns: str, frame: BagImage, seg: Segmentation, coverage: np.ndarray,
                      names: Sequence[str]) -> None:
        w, t = self.writer, frame.t_ns
        w.write_image(f"{ns}/labels", t, seg.labels, "mono8", stamp_ns=frame.stamp_ns,
                      frame_id=frame.frame_id)
        w.write_message(f"{ns}/confidence", t, IMAGE_TYPE,
                        self._float_image(frame, seg.confidence))
        w.write_message(f"{ns}/coverage", t, FLOAT32_ARRAY_TYPE,
                        self._coverage(coverage, names))

    def _header(self, frame: BagImage) -> Any:
        types = self.writer.store.types
        sec, nanosec = divmod(frame.stamp_ns, 1_000_000_000)
        return types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
            frame_id=frame.frame_id)

    def _float_image(self, frame: BagImage, values: np.ndarray) -> Any:
        data = np.ascontiguousarray(values, dtype="<f4")
        h, w = data.shape
        return self.writer.store.types[IMAGE_TYPE](
            header=self._header(frame), height=h, width=w, encoding="32FC1", is_bigendian=0,
            step=4 * w, data=data.reshape(-1).view(np.uint8))

    def _coverage(self, values: np.ndarray, names: Sequence[str]) -> Any:
        types = self.writer.store.types
        n = len(names)
        dim = types["std_msgs/msg/MultiArrayDimension"](label=",".join(names), size=n, stride=n)
        return types[FLOAT32_ARRAY_TYPE](
            layout=types["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0),
            data=np.asarray(values, dtype=np.float32))
