"""Offline replay: a bag's camera topic through the node's Segmenter, frame by frame.

Three threads keep the model busy: a reader decodes frames (and looks up their ground truth)
ahead of time, the calling thread runs the Segmenter(s), and a writer draws overlays, fills the
output bag and accumulates the figures, handing the video frames to the encoder's own thread.
Inference releases the GIL, so reading and writing overlap it. The output bag holds the input
frames (and the camera's CameraInfo) exactly as stored in the input bag.

Stopping is safe at any moment: on Ctrl-C (or any error) the frames already segmented are still
written, the output bag is closed into a valid, shorter bag, the report describes what was done,
and only then is the exception raised again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.atomic import atomic_dir, write_json_atomic
from edge.bags import BagImage, RawMessage, ReadStats
from edge.bundle import Bundle, load_bundle
from edge.replay.metrics import PairCounts, StreamFigures, scores_summary
from edge.replay.outputs import NODE_NAMESPACE, OutputTopics
from edge.replay.source import (
    BagGroundTruth,
    DirGroundTruth,
    FrameSource,
    camera_info_topic,
    choose_topic,
    fit_labels,
)
from edge.replay.video import VIDEO_FILE, VideoSink
from edge.scoring import check_scoring_available
from edge.segmenter import Segmentation, Segmenter
from edge.visualize import overlay, palette

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
_END = object()
_QUEUE = 4  # frames in flight per stage: enough to overlap, little memory at 1080p
_SWITCH_INTERVAL_S = 0.001  # Python's default is 5 ms


@dataclass(frozen=True)
class ReplaySettings:
    topic: str | None = None  # None: /camera/image_raw(/compressed) or the only image topic
    every: int = 1
    realtime: bool = False  # pace frames by their bag timestamps
    backend: str = "auto"
    precision: str = "fp16"
    gt_topic: str | None = None
    gt_dir: Path | None = None
    gt_classes: int | None = None  # None: len(gt_names), else 1 + the largest label seen
    gt_names: tuple[str, ...] | None = None  # ground-truth class names for the report
    overlay_alpha: float = 0.5
    namespace: str = NODE_NAMESPACE
    storage: str = "mcap"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"--every must be >= 1, got {self.every}")
        if self.gt_topic and self.gt_dir:
            raise ValueError("give ground truth either as a topic or as a folder, not both")
        if self.gt_classes is not None and not 1 <= self.gt_classes <= 255:
            raise ValueError(f"ground-truth classes must be in 1..255, got {self.gt_classes}")
        if self.gt_names is not None and self.gt_classes is not None \
                and len(self.gt_names) != self.gt_classes:
            raise ValueError(f"{len(self.gt_names)} ground-truth names for "
                             f"{self.gt_classes} ground-truth classes")


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    out_bag: Path | None
    report_dir: Path | None


@dataclass
class _Model:
    """One bundle under test and everything measured about it."""

    bundle: Bundle
    segmenter: Segmenter
    figures: StreamFigures
    truth_pairs: PairCounts = field(default_factory=PairCounts)
    truth_positions: list[int] = field(default_factory=list)  # processed frames with truth

    def warm_up(self) -> None:
        """One frame before timing starts: first runs allocate (and TensorRT may tune)."""
        w, h = self.segmenter.camera_size
        self.segmenter.segment(np.zeros((h, w, 3), np.uint8))
        self.segmenter.reset()

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.bundle.path), "model_sha256": self.bundle.model_sha256,
                "classes": [c.name for c in self.bundle.meta.classes],
                "class_colors": [list(c.color) for c in self.bundle.meta.classes],
                "backend": self.segmenter.describe()}


@dataclass
class _Work:
    frame: BagImage
    truth: np.ndarray | None
    companions: list[RawMessage] = field(default_factory=list)  # copied into the output bag
    segs: list[Segmentation] = field(default_factory=list)


class _Pipeline:
    """The reader and writer threads around the caller's inference loop."""

    def __init__(self, produce: Callable[[], Iterator[_Work]],
                 consume: Callable[[_Work], None]) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue(_QUEUE)
        self.outbox: queue.Queue[Any] = queue.Queue(_QUEUE)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._produce, self._consume = produce, consume
        self._reader = threading.Thread(target=self._read, name="replay-reader", daemon=True)
        self._writer = threading.Thread(target=self._write, name="replay-writer")

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def put(self, box: queue.Queue[Any], item: Any) -> bool:
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                box.put(item, timeout=0.1)
                return True
        return False

    def _read(self) -> None:
        try:
            with contextlib.closing(self._produce()) as works:  # type: ignore[type-var]
                for work in works:
                    if not self.put(self.inbox, work):
                        return
        except Exception as exc:
            self._fail("reading", exc)
        finally:
            self.put(self.inbox, _END)

    def _write(self) -> None:
        # Drain to the end marker even after a failure, so the inference loop never blocks.
        failed = False
        while (work := self.outbox.get()) is not _END:
            if failed:
                continue
            try:
                self._consume(work)
            except Exception as exc:
                self._fail("writing", exc)
                failed = True

    def _fail(self, stage: str, exc: Exception) -> None:
        log.error("replay %s failed: %s: %s", stage, type(exc).__name__, exc, exc_info=exc)
        self.errors.append(f"{stage}: {type(exc).__name__}: {exc}")
        self.stop.set()

    def frames(self) -> Iterator[_Work]:
        while not self.stop.is_set() or not self.inbox.empty():
            try:
                item = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def finish(self) -> None:
        """Let the writer write what was segmented, then end both threads."""
        self.stop.set()
        self.outbox.put(_END)  # the writer always drains, so this cannot block for long
        self._writer.join()
        self._reader.join(timeout=5.0)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """While the bag and report are finished, a second Ctrl-C only says to wait."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def wait(_signum: int, _frame: Any) -> None:
        log.warning("finishing the output bag and report of what was done; please wait")

    previous = signal.signal(signal.SIGINT, wait)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _rate(source: FrameSource, topic: str, every: int) -> tuple[int | None, float]:
    """Frames to process (None if unknown) and the video's frame rate (10 if unknown)."""
    count, duration_ns = source.topic_timing(topic)
    fps = (count - 1) / (duration_ns / 1e9) if count and count > 1 and duration_ns else 10.0
    return (None if count is None else math.ceil(count / every)), max(1.0, fps / every)


def replay(bag: str | Path, bundle: str | Path | Bundle, settings: ReplaySettings | None = None,
           out_bag: str | Path | None = None, report_dir: str | Path | None = None,
           compare: str | Path | Bundle | None = None) -> ReplayResult:
    """Replay ``bag`` through ``bundle`` (and ``compare``); see the module text.

    Raises KeyboardInterrupt (after finishing the outputs) when interrupted.
    """
    s = settings or ReplaySettings()
    out_bag = Path(out_bag) if out_bag else None
    report_dir = Path(report_dir) if report_dir else None
    if out_bag is not None and out_bag.exists():
        raise ValueError(f"output bag {out_bag} exists already; remove it or choose another path")
    if report_dir is not None and report_dir.exists() and any(report_dir.iterdir()) \
            and not (report_dir / SUMMARY_FILE).is_file():
        # The report replaces its folder as a whole: never a folder that is not a report.
        raise ValueError(f"refusing to write the report into {report_dir}: it is a non-empty "
                         "folder that holds no earlier replay report")
    source = FrameSource(bag)
    topic = choose_topic(source.topics, s.topic, source.bag,
                         exclude=(s.gt_topic,) if s.gt_topic else ())
    truth: BagGroundTruth | DirGroundTruth | None = None
    if s.gt_topic:
        truth = BagGroundTruth(source, s.gt_topic)
    elif s.gt_dir:
        truth = DirGroundTruth(s.gt_dir)
    if truth is not None or compare is not None:
        check_scoring_available()
    if report_dir is not None:
        from edge.replay.report import check_report_available
        check_report_available()

    models = []
    for b in (bundle, compare):
        if b is None:
            continue
        loaded = b if isinstance(b, Bundle) else load_bundle(b)
        seg = Segmenter(loaded, backend=s.backend, precision=s.precision)
        models.append(_Model(loaded, seg, StreamFigures([c.name for c in loaded.meta.classes])))
    total, fps = _rate(source, topic, s.every)
    info_topic = camera_info_topic(topic, source.topics[topic], source.all_topics) \
        if out_bag is not None else None
    run = _Run(source, topic, s, models, truth, total, out_bag is not None, info_topic)

    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(atomic_dir(report_dir)) if report_dir else None
        if staging is not None:
            staging.chmod(0o755)  # a report is for sharing; the staging folder starts private
        writer = stack.enter_context(source.output_writer(out_bag, s.storage, s.namespace)) \
            if out_bag else None
        if writer is not None:
            run.outputs = OutputTopics(writer, topic, models[0].figures.class_names,
                                       models[1].figures.class_names if compare else None,
                                       namespace=s.namespace)
        if staging is not None:
            run.video = stack.enter_context(VideoSink(staging / VIDEO_FILE, fps))
        raised = run.execute()
        with _sigint_deferred():
            if run.video is not None:
                run.video.close()
            summary = run.summary(out_bag, report_dir)
            if staging is not None:
                from edge.replay.report import write_report
                write_report(staging, summary)
                write_json_atomic(staging / SUMMARY_FILE, summary)
            stack.close()  # closes the output bag and moves the report into place
    if raised is not None:
        raise raised
    return ReplayResult(summary, out_bag, report_dir)


class _Run:
    """State of one replay: what the three stages share, and the summary they produce."""

    def __init__(self, source: FrameSource, topic: str, settings: ReplaySettings,
                 models: list[_Model], truth: BagGroundTruth | DirGroundTruth | None,
                 total: int | None, copy_input: bool, info_topic: str | None) -> None:
        self.source, self.topic, self.s = source, topic, settings
        self.models, self.truth, self.total = models, truth, total
        self.copy_input, self.info_topic = copy_input, info_topic
        self.read = ReadStats()
        self.refused: Counter[str] = Counter()
        self.truth_missing = 0
        self.agreement = PairCounts()
        self.outputs: OutputTopics | None = None
        self.video: VideoSink | None = None
        self.luts = [palette(m.bundle.meta.classes) for m in models]
        self.frames: list[tuple[int, int, int]] = []  # index, log time, stamp
        self.stopped = "completed"
        self.wall_s = 0.0
        self.first_frame_s: float | None = None  # from start until the first frame was read
        self.max_lag_s = 0.0
        self.errors: list[str] = []

    def _produce(self) -> Iterator[_Work]:
        # Companion messages (camera_info) ride with the frame before them, those ahead of the
        # first frame with the first, so each work is held until the next frame is read.
        held: _Work | None = None
        ahead: list[RawMessage] = []
        for item in self.source.read(self.topic, self.s.every, self.read,
                                     keep_raw=self.copy_input,
                                     companions=(self.info_topic,) if self.info_topic else ()):
            if isinstance(item, RawMessage):
                (held.companions if held is not None else ahead).append(item)
                continue
            if held is not None:
                yield held
            labels = None
            if self.truth is not None:
                labels = self.truth.lookup(item)
                if labels is not None:
                    labels = fit_labels(labels, item.rgb.shape[:2])
            held, ahead = _Work(item, labels, companions=ahead), []
        if held is not None:
            yield held

    def _consume(self, work: _Work) -> None:
        if self.outputs is not None:
            self.outputs.copy(work.companions)
        if not work.segs:  # refused by the segmenter
            return
        frame = work.frame
        self.frames.append((frame.index, frame.t_ns, frame.stamp_ns))
        overlays = []
        for model, seg, lut in zip(self.models, work.segs, self.luts, strict=True):
            model.figures.add(seg)
            if work.truth is not None:
                model.truth_pairs.add(seg.labels, work.truth)
                model.truth_positions.append(len(self.frames) - 1)
            if self.video is not None or self.outputs is not None:  # else nothing shows it
                overlays.append(overlay(frame.rgb, seg.labels, lut, self.s.overlay_alpha))
        if self.truth is not None and work.truth is None:
            self.truth_missing += 1
        compare = work.segs[1] if len(work.segs) > 1 else None
        if compare is not None:
            self.agreement.add(compare.labels, work.segs[0].labels)
        if self.video is not None:
            self.video.add(*overlays)
        if self.outputs is not None:
            self.outputs.write(frame, work.segs[0], self.models[0].figures.coverage[-1],
                               overlays[0], compare,
                               self.models[1].figures.coverage[-1] if compare else None)

    def execute(self) -> BaseException | None:
        """Run the pipeline; returns the exception that stopped it (to re-raise later)."""
        from tqdm import tqdm

        pipeline = _Pipeline(self._produce, self._consume)
        progress = tqdm(total=self.total, unit="frame", disable=not self.s.progress,
                        desc=f"replay {self.topic}")
        raised: BaseException | None = None
        for model in self.models:
            model.warm_up()
        t0 = time.perf_counter()
        first_t_ns: int | None = None
        switch = sys.getswitchinterval()
        # The reader and writer hold the GIL in long pure-Python stretches (rosbags); a short
        # switch interval hands it back to inference as soon as ONNX Runtime returns.
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        pipeline.start()
        try:
            for work in pipeline.frames():
                if self.first_frame_s is None:
                    self.first_frame_s = time.perf_counter() - t0
                if self.s.realtime:
                    first_t_ns = work.frame.t_ns if first_t_ns is None else first_t_ns
                    due = t0 + self.first_frame_s + (work.frame.t_ns - first_t_ns) / 1e9
                    lag = time.perf_counter() - due
                    if lag < 0:
                        time.sleep(-lag)
                    self.max_lag_s = max(self.max_lag_s, lag)
                try:
                    work.segs = [m.segmenter.segment(work.frame.rgb) for m in self.models]
                except ValueError as exc:
                    self.refused[str(exc)] += 1
                    log.warning("frame %d refused by the segmenter: %s", work.frame.index, exc)
                    if not work.companions:
                        continue
                    work.segs = []  # the writer still copies the companion messages
                if not pipeline.put(pipeline.outbox, work):
                    break
                progress.update()
        except KeyboardInterrupt as exc:
            self.stopped, raised = "interrupted", exc
            log.warning("interrupted: finishing the frames already segmented")
        except BaseException as exc:
            self.stopped, raised = f"error: {type(exc).__name__}: {exc}", exc
        finally:
            with _sigint_deferred():
                pipeline.finish()
                progress.close()
            sys.setswitchinterval(switch)
        self.wall_s = time.perf_counter() - t0
        self.errors = pipeline.errors
        if pipeline.errors and raised is None:
            self.stopped = f"error: {pipeline.errors[0]}"
            raised = RuntimeError(f"replay failed while {pipeline.errors[0]}")
        return raised

    def summary(self, out_bag: Path | None, report_dir: Path | None) -> dict[str, Any]:
        s = self.s
        processed = len(self.frames)
        primary = self.models[0]
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
        doc: dict[str, Any] = {
            "uwstego_version": __version__,
            "bag": str(self.source.bag),
            "topic": self.topic,
            "topic_type": self.source.topics[self.topic],
            "settings": settings,
            "stopped": self.stopped,
            "frames": {
                "to_process": self.total,
                "read": self.read.read,
                "processed": processed,
                "skipped": self.read.skipped + sum(self.refused.values()),
                "skip_reasons": dict(self.read.reasons) | dict(self.refused),
                "damage": list(self.source.damage),
                "errors": list(self.errors),
            },
            "wall_s": self.wall_s,
            "startup_s": self.first_frame_s,
            # Steady state: from the first frame read to the last frame written.
            "throughput_fps": (processed / (self.wall_s - self.first_frame_s)
                               if processed and self.first_frame_s is not None
                               and self.wall_s > self.first_frame_s else None),
            "bundle": primary.describe(),
            "model": primary.figures.summary(),
            "outputs": {"bag": str(out_bag) if out_bag else None,
                        "camera_info_copied": self.info_topic,
                        "report": str(report_dir) if report_dir else None},
        }
        if s.realtime:
            doc["realtime_max_lag_s"] = self.max_lag_s
        per_frame: dict[str, Any] = {
            "index": [f[0] for f in self.frames], "t_ns": [f[1] for f in self.frames],
            "stamp_ns": [f[2] for f in self.frames], "model": primary.figures.series()}
        if self.truth is not None:
            doc["ground_truth"], per_frame["ground_truth"] = self._truth_summary(primary)
        if len(self.models) > 1:
            other = self.models[1]
            doc["compare"] = {"bundle": other.describe(), "model": other.figures.summary()}
            per_frame["compare"] = {"model": other.figures.series()}
            if len(self.agreement):
                overall, frames = self.agreement.scores(len(other.figures.class_names),
                                                        len(primary.figures.class_names))
                agreement = scores_summary(overall, frames, primary.figures.class_names)
                agreement.pop("over_time")
                doc["compare"]["agreement"] = agreement
                per_frame["compare"]["agreement"] = [s.accuracy for s in frames]
            if self.truth is not None:
                doc["compare"]["ground_truth"], per_frame["compare"]["ground_truth"] = \
                    self._truth_summary(other)
        doc["per_frame"] = per_frame
        return doc

    def _truth_summary(self, model: _Model) -> tuple[dict[str, Any], dict[str, Any]]:
        pairs = model.truth_pairs
        source = self.s.gt_topic or str(self.s.gt_dir)
        base: dict[str, Any] = {"source": source, "frames_scored": len(pairs),
                                "frames_without_truth": self.truth_missing}
        if isinstance(self.truth, BagGroundTruth) and self.truth.stats.skipped:
            base["unreadable"] = dict(self.truth.stats.reasons)
        elif isinstance(self.truth, DirGroundTruth) and self.truth.unreadable:
            base["unreadable"] = list(self.truth.unreadable)
        names = self.s.gt_names
        n_truth = self.s.gt_classes or (len(names) if names else pairs.truth_classes())
        if not len(pairs) or not n_truth:
            return base, {}
        overall, frames = pairs.scores(len(model.figures.class_names), n_truth)
        scored = scores_summary(overall, frames,
                                list(names) if names else [f"class_{i}" for i in range(n_truth)])
        over_time: dict[str, list[float | None]] = {}
        for key, series in scored.pop("over_time").items():
            aligned: list[float | None] = [None] * len(self.frames)
            for position, value in zip(model.truth_positions, series, strict=True):
                aligned[position] = value
            over_time[key] = aligned
        base.update(n_classes=n_truth, extra_clusters=max(0, len(model.figures.class_names)
                                                          - n_truth), **scored)
        return base, over_time
