"""The output bag of a replay: the input frames plus what the node would have published.

The input topic (and the camera's CameraInfo) are copied byte for byte from the input bag. The
node's topics are named like the node's (``/uwstego_segmentation/labels`` ...), stamped with the
input frame's header and log time, so tools set up for the live node read a replayed bag
unchanged. Labels are mono8, novelty (calibrated bundles) mono8 as the node's ``~/novelty``,
and coverage as in :mod:`uwstego.coverage` (the unknown share last for calibrated bundles). To keep
the bag small (raw rgb8 overlays and float confidence made a minute of 640x480 at 10 Hz about 2 GB),
by default:

* the overlay is a ``CompressedImage`` (JPEG) on ``<ns>/overlay/compressed``; ``overlay="raw"``
  keeps the node's rgb8 ``<ns>/overlay``, ``overlay="off"`` leaves it out;
* the confidence (max cosine similarity, clipped to [0, 1]) is mono16 scaled by 65535 (or
  mono8 by 255) on ``<ns>/confidence``, with the factor that turns a pixel value back into the
  similarity (1/65535 or 1/255) on ``<ns>/confidence/scale`` (``std_msgs/Float32``, one per
  frame, same log time); ``confidence="32FC1"`` keeps the node's float image, ``"off"`` leaves
  it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from uwstego.bags import BagImage, BagWriter, RawMessage
from uwstego.contract import NODE_NAME
from uwstego.coverage import coverage_names
from uwstego.novelty import novelty_mono8
from uwstego.segmenter import Segmentation

NODE_NAMESPACE = f"/{NODE_NAME}"
OVERLAY_MODES = ("jpeg", "raw", "off")
CONFIDENCE_MODES = ("mono16", "mono8", "32FC1", "off")
CONFIDENCE_SCALE = {"mono16": 65535, "mono8": 255}  # pixel value = similarity x this
OVERLAY_JPEG_QUALITY = 85
SCALE_TYPE = "std_msgs/msg/Float32"


def scaled_confidence(confidence: np.ndarray, mode: str) -> np.ndarray:
    """The float confidence as the ``mode`` image the bag stores (``mono16``/``mono8``)."""
    full = CONFIDENCE_SCALE[mode]
    dtype = np.uint16 if mode == "mono16" else np.uint8
    return np.rint(np.clip(confidence, 0.0, 1.0) * full).astype(dtype)


class OutputTopics:
    """Writes one replayed frame and its segmentations into an open :class:`BagWriter`.

    ``models`` are ``(sub-namespace, class names)`` per model, in the replay's order: the first
    model's topics are the node's (``<namespace>/labels`` ...), a compared model's are under its
    sub-namespace (``<namespace>/compare/labels``, ``<namespace>/compare2/labels`` ...). The
    overlay is drawn for the first model only. ``overlay`` and ``confidence``: see the module.
    """

    def __init__(self, writer: BagWriter, input_topic: str,
                 models: Sequence[tuple[str, Sequence[str]]],
                 namespace: str = NODE_NAMESPACE, overlay: str = "jpeg",
                 confidence: str = "mono16") -> None:
        if overlay not in OVERLAY_MODES:
            raise ValueError(f"overlay must be one of {OVERLAY_MODES}, got {overlay!r}")
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}")
        self.writer = writer
        self.input_topic = input_topic
        self.overlay, self.confidence = overlay, confidence
        root = namespace.rstrip("/")
        self.models = [(root if i == 0 else f"{root}/{sub}", list(names))
                       for i, (sub, names) in enumerate(models)]

    @property
    def wants_overlay(self) -> bool:
        return self.overlay != "off"

    def write(self, frame: BagImage, overlay_rgb: np.ndarray | None,
              results: Sequence[tuple[Segmentation, np.ndarray]]) -> None:
        """``results``: ``(segmentation, coverage)`` of every model, in order; ``overlay_rgb``
        the first model's overlay (``None`` when the overlay is off)."""
        w, t = self.writer, frame.t_ns
        if frame.raw is not None:
            w.write_raw(self.input_topic, t, frame.msgtype, frame.raw)
        else:  # footage (a video, an image folder) has no stored message to copy
            w.write_image(self.input_topic, t, frame.rgb, "rgb8", stamp_ns=frame.stamp_ns,
                          frame_id=frame.frame_id)
        for (ns, names), (seg, coverage) in zip(self.models, results, strict=True):
            self._segmentation(ns, frame, seg, coverage, names)
        if overlay_rgb is not None and self.wants_overlay:
            ns = self.models[0][0]
            if self.overlay == "jpeg":
                w.write_compressed(f"{ns}/overlay/compressed", t, overlay_rgb,
                                   stamp_ns=frame.stamp_ns, frame_id=frame.frame_id,
                                   quality=OVERLAY_JPEG_QUALITY)
            else:
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
        if self.confidence == "32FC1":
            w.write_image(f"{ns}/confidence", t, seg.confidence, "32FC1",
                          stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
        elif self.confidence != "off":
            w.write_image(f"{ns}/confidence", t, scaled_confidence(seg.confidence,
                                                                   self.confidence),
                          self.confidence, stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
            w.write_message(f"{ns}/confidence/scale", t, SCALE_TYPE,
                            w.store.types[SCALE_TYPE](
                                data=1.0 / CONFIDENCE_SCALE[self.confidence]))
        novel = seg.novel_fraction
        if novel is not None:  # the node's layout for calibrated bundles (edge/coverage.py)
            coverage = np.append(coverage, np.float32(novel))
            names = coverage_names(names, with_unknown=True)
        if seg.novelty is not None:
            w.write_image(f"{ns}/novelty", t, novelty_mono8(seg.novelty), "mono8",
                          stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
        w.write_coverage(f"{ns}/coverage", t, coverage, names)
