"""The output bag of a replay: the input frames plus what the node would have published.

The input topic (and the camera's CameraInfo) are copied byte for byte from the input bag. The
node's topics are named like the node's (``/uwstego_segmentation/labels`` ...) and laid out the
same way (labels mono8, overlay rgb8, confidence 32FC1, novelty mono8 for calibrated bundles,
coverage as in :mod:`edge.coverage`),
stamped with the input frame's header and log time, so tools set up for the live node read a
replayed bag unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from edge.bags import BagImage, BagWriter, RawMessage
from edge.contract import NODE_NAME
from edge.coverage import coverage_names
from edge.novelty import novelty_mono8
from edge.segmenter import Segmentation

NODE_NAMESPACE = f"/{NODE_NAME}"


class OutputTopics:
    """Writes one replayed frame and its segmentations into an open :class:`BagWriter`.

    ``models`` are ``(sub-namespace, class names)`` per model, in the replay's order: the first
    model's topics are the node's (``<namespace>/labels`` ...), a compared model's are under its
    sub-namespace (``<namespace>/compare/labels``, ``<namespace>/compare2/labels`` ...). The
    overlay is drawn for the first model only.
    """

    def __init__(self, writer: BagWriter, input_topic: str,
                 models: Sequence[tuple[str, Sequence[str]]],
                 namespace: str = NODE_NAMESPACE) -> None:
        self.writer = writer
        self.input_topic = input_topic
        root = namespace.rstrip("/")
        self.models = [(root if i == 0 else f"{root}/{sub}", list(names))
                       for i, (sub, names) in enumerate(models)]

    def write(self, frame: BagImage, overlay_rgb: np.ndarray,
              results: Sequence[tuple[Segmentation, np.ndarray]]) -> None:
        """``results``: ``(segmentation, coverage)`` of every model, in order."""
        w, t = self.writer, frame.t_ns
        if frame.raw is None:
            raise ValueError(f"frame {frame.index} was read without its stored message "
                             "(keep_raw); the input topic cannot be copied")
        w.write_raw(self.input_topic, t, frame.msgtype, frame.raw)
        for (ns, names), (seg, coverage) in zip(self.models, results, strict=True):
            self._segmentation(ns, frame, seg, coverage, names)
            if ns == self.models[0][0]:
                w.write_image(f"{ns}/overlay", t, overlay_rgb, "rgb8", stamp_ns=frame.stamp_ns,
                              frame_id=frame.frame_id)

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
        novel = seg.novel_fraction
        if novel is not None:  # the node's layout for calibrated bundles (edge/coverage.py)
            coverage = np.append(coverage, np.float32(novel))
            names = coverage_names(names, with_unknown=True)
        if seg.novelty is not None:
            w.write_image(f"{ns}/novelty", t, novelty_mono8(seg.novelty), "mono8",
                          stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
        w.write_coverage(f"{ns}/coverage", t, coverage, names)
