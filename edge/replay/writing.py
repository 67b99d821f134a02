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

from uwstego.bags import BagWriter
from uwstego.replay.metrics import InputChange
from uwstego.replay.models import ReplayModel
from uwstego.replay.objects_run import ObjectsRun
from uwstego.replay.outputs import OutputTopics
from uwstego.replay.reading import Work
from uwstego.replay.settings import ReplaySettings
from uwstego.replay.video import VideoSink
from uwstego.visualize import overlay


class FrameWriter:
    def __init__(self, models: Sequence[ReplayModel], input_topic: str, settings: ReplaySettings,
                 *, out_bag: Path | None, video: Path | None, fps: float, with_truth: bool,
                 offered_qos: Mapping[str, Any] | None = None,
                 labels: Sequence[str] | None = None, objects: ObjectsRun | None = None) -> None:
        """``settings``: the output bag's storage, namespace and overlay/confidence modes and the
        overlays' alpha; ``video``: the folder the overlay video goes into (None: no video);
        ``labels``: the models' names for the video's captions (default: their roles);
        ``objects``: records the objects of every frame written."""
        self.models = list(models)
        self.input_topic = input_topic
        self.settings = settings
        self.out_bag = out_bag
        self.labels = list(labels) if labels else [m.role for m in self.models]
        self.video_folder, self.fps = video, fps
        self.with_truth = with_truth
        self.offered_qos = offered_qos  # per-topic QoS profiles for the output bag
        self.frames: list[tuple[int, int, int]] = []  # per processed frame: index, log time, stamp
        self.truth_missing = 0  # processed frames without ground truth
        self.input_change = InputChange()  # per processed frame
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
                s = self.settings
                bag = stack.enter_context(BagWriter(self.out_bag, storage=s.storage,
                                                    offered_qos=self.offered_qos))
                self._topics = OutputTopics(bag, self.input_topic,
                                            [(m.role, m.class_names) for m in self.models],
                                            namespace=s.namespace, overlay=s.bag_overlay,
                                            confidence=s.bag_confidence)
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
        self.input_change.add(frame.rgb)
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
                overlays.append(overlay(frame.rgb, seg.labels, model.lut,
                                        self.settings.overlay_alpha))
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
