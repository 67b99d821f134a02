"""The replay's writing stage: per segmented frame, the figures of every model, the overlays,
the output bag and the overlay video.

Runs on the pipeline's writer thread, which opens the outputs (:meth:`FrameWriter.open`) and
closes them when the run ends: the output bag is then complete at its path and the video
finished, before anything else (the summary, the report) is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.bags import BagWriter
from edge.replay.models import ReplayModel
from edge.replay.objects_run import ObjectsRun
from edge.replay.outputs import OutputTopics
from edge.replay.reading import Work
from edge.replay.video import VideoSink
from edge.visualize import overlay


class FrameWriter:
    def __init__(self, models: Sequence[ReplayModel], input_topic: str, *,
                 out_bag: Path | None, storage: str, namespace: str, video: Path | None,
                 fps: float, overlay_alpha: float, with_truth: bool,
                 offered_qos: Mapping[str, Any] | None = None,
                 bag_overlay: str = "jpeg", bag_confidence: str = "mono16",
                 labels: Sequence[str] | None = None, objects: ObjectsRun | None = None) -> None:
        """``video``: the folder the overlay video goes into (None: no video); ``labels``: the
        models' names for the video's captions (default: their roles); ``objects``: records the
        objects of every frame written."""
        self.models = list(models)
        self.input_topic = input_topic
        self.out_bag, self.storage, self.namespace = out_bag, storage, namespace
        self.bag_overlay, self.bag_confidence = bag_overlay, bag_confidence
        self.labels = list(labels) if labels else [m.role for m in self.models]
        self.video_folder, self.fps, self.overlay_alpha = video, fps, overlay_alpha
        self.with_truth = with_truth
        self.offered_qos = offered_qos  # per-topic QoS profiles for the output bag
        self.frames: list[tuple[int, int, int]] = []  # per processed frame: index, log time, stamp
        self.truth_missing = 0  # processed frames without ground truth
        self.video_frames = 0
        self.video_error: str | None = None
        self.video_file: str | None = None
        self._topics: OutputTopics | None = None
        self._video: VideoSink | None = None
        self.objects = objects

    @contextlib.contextmanager
    def open(self) -> Iterator[Callable[[Work], None]]:
        """The outputs, open for the block (on the thread that writes them)."""
        with contextlib.ExitStack() as stack:
            if self.out_bag is not None:
                bag = stack.enter_context(BagWriter(self.out_bag, storage=self.storage,
                                                    offered_qos=self.offered_qos))
                self._topics = OutputTopics(bag, self.input_topic,
                                            [(m.role, m.class_names) for m in self.models],
                                            namespace=self.namespace, overlay=self.bag_overlay,
                                            confidence=self.bag_confidence)
            if self.video_folder is not None:
                self._video = stack.enter_context(VideoSink(self.video_folder, self.fps))
            try:
                yield self.write
            finally:
                if self._video is not None:
                    self._video.close()
                    self.video_frames, self.video_error = self._video.frames, self._video.error
                    self.video_file = self._video.path.name if self._video.path else None
                self._topics = self._video = None

    def write(self, work: Work) -> None:
        if self._topics is not None:
            self._topics.copy(work.companions)
        if not work.segs:  # refused by the segmenter
            return
        frame = work.frame
        self.frames.append((frame.index, frame.t_ns, frame.stamp_ns))
        primary = self.models[0]
        bag_overlay = self._topics is not None and self._topics.wants_overlay
        overlays = []
        for model, seg in zip(self.models, work.segs, strict=True):
            model.figures.add(seg)
            if work.truth is not None:
                model.truth_pairs.add(seg.labels, work.truth)
                model.truth_positions.append(len(self.frames) - 1)
            if model is not primary:
                model.agreement.add(seg.labels, work.segs[0].labels)
            if self._video is not None or (bag_overlay and model is primary):
                overlays.append(overlay(frame.rgb, seg.labels, model.lut, self.overlay_alpha))
        if self.objects is not None:
            self.objects.add(len(self.frames) - 1, frame, work.segs, work.truth)
        if self.with_truth and work.truth is None:
            self.truth_missing += 1
        if self._video is not None:
            t_s = (frame.t_ns - self.frames[0][1]) / 1e9
            self._video.add(overlays, [f"{label}  t = {t_s:.2f} s" for label in self.labels])
        if self._topics is not None:
            self._topics.write(frame, overlays[0] if overlays else None,
                               [(seg, m.figures.coverage[-1])
                                for m, seg in zip(self.models, work.segs, strict=True)])
