"""Offline replay: a bag's camera topic through the node's Segmenter(s), frame by frame.

The stages, each in a module of its own: reading (:mod:`uwstego.replay.reading`, a thread that
decodes frames and looks up their ground truth ahead of time), segmenting
(:mod:`uwstego.replay.segmenting`, the calling thread runs every model), writing
(:mod:`uwstego.replay.writing`, a thread that draws overlays, fills the output bag and the video and
accumulates the figures), joined by :mod:`uwstego.replay.pipeline`; then the summary
(:mod:`uwstego.replay.summary`) and the report drawn from it (:mod:`uwstego.replay.plots`,
:mod:`uwstego.replay.report`). The output
bag holds the input frames (and the camera's CameraInfo) exactly as stored in the input bag.

Stopping is safe at any moment once the bag's topics are known: on Ctrl-C (or any error), also
while the models load or before the first frame, the frames already segmented are written, the
output bag is closed into a valid, shorter (possibly empty) bag at its path, then the report
describes what was done, and only then is the exception raised again. The bag is complete
before the report is begun, so a kill during the report loses no frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from uwstego import __version__
from uwstego.atomic import atomic_dir
from uwstego.bags import ReadStats
from uwstego.bundle import Bundle
from uwstego.replay.class_names import bag_class_names
from uwstego.replay.footage import FOOTAGE_TOPIC, Footage, is_footage
from uwstego.replay.models import ReplayModel, load_models, random_weights_warning, truth_facts
from uwstego.replay.objects_run import ObjectsRun, write_objects
from uwstego.replay.pipeline import Pipeline, sigint_deferred
from uwstego.replay.reading import Work, produce
from uwstego.replay.segmenting import SegmentRun, segment_all
from uwstego.replay.settings import ReplaySettings
from uwstego.replay.source import (
    BagGroundTruth,
    DirGroundTruth,
    FrameSource,
    camera_info_topic,
    choose_topic,
)
from uwstego.replay.summary import (
    SUMMARY_FILE,
    FrameCounts,
    OutputsDoc,
    ReplaySummary,
    model_labels,
    write_summary,
)
from uwstego.replay.writing import FrameWriter
from uwstego.scoring import check_scoring_available
from uwstego.survey.dive import survey_dive
from uwstego.survey.navigation import choose_nav_topic
from uwstego.survey.section import SURVEY_DIR

__all__ = ["SUMMARY_FILE", "ReplayResult", "ReplaySettings", "replay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    summary: ReplaySummary
    out_bag: Path | None
    report_dir: Path | None


def _rate(source: FrameSource, topic: str, every: int) -> tuple[int | None, float]:
    """Frames to process (None if unknown) and the video's frame rate (10 if unknown)."""
    count, duration_ns = source.topic_timing(topic)
    fps = (count - 1) / (duration_ns / 1e9) if count and count > 1 and duration_ns else 10.0
    return (None if count is None else math.ceil(count / every)), max(1.0, fps / every)


def _check_outputs(out_bag: Path | None, report_dir: Path | None) -> None:
    if out_bag is not None and out_bag.exists():
        raise ValueError(f"output bag {out_bag} exists already; remove it or choose another path")
    if report_dir is not None and report_dir.exists() and any(report_dir.iterdir()) \
            and not (report_dir / SUMMARY_FILE).is_file():
        # The report replaces its folder as a whole: never a folder that is not a report.
        raise ValueError(f"refusing to write the report into {report_dir}: it is a non-empty "
                         "folder that holds no earlier replay report")


def replay(bag: str | Path, bundle: str | Path | Bundle, settings: ReplaySettings | None = None,
           out_bag: str | Path | None = None, report_dir: str | Path | None = None,
           compare: str | Path | Bundle | Sequence[str | Path | Bundle] | None = None
           ) -> ReplayResult:
    """Replay ``bag`` (a rosbag2, or footage: a video or an image folder) through ``bundle`` and
    the bundle(s) in ``compare``; see the module text.

    Raises KeyboardInterrupt (after finishing the outputs) when interrupted.
    """
    s = settings or ReplaySettings()
    out_bag = Path(out_bag) if out_bag else None
    report_dir = Path(report_dir) if report_dir else None
    compared = [] if compare is None else (
        [compare] if isinstance(compare, (str, Path, Bundle)) else list(compare))
    _check_outputs(out_bag, report_dir)
    source: FrameSource | Footage
    if is_footage(Path(bag)):
        if s.gt_topic or s.topic:
            raise ValueError(f"{bag} is a video or an image folder: it has no topics; give "
                             "ground truth as --gt-dir (PNGs named by frame index, 000042.png)")
        source = Footage(bag, s.fps)
        topic = FOOTAGE_TOPIC
    else:
        source = FrameSource(bag)
        s = _with_declared_truth(s, source)
        topic = choose_topic(source.topics, s.topic, source.bag,
                             exclude=(s.gt_topic,) if s.gt_topic else ())
    truth: BagGroundTruth | DirGroundTruth | None = None
    if s.gt_topic:
        assert isinstance(source, FrameSource)
        truth = BagGroundTruth(source, s.gt_topic)
        s = _with_bag_names(s, source.bag)
    elif s.gt_dir:
        truth = DirGroundTruth(s.gt_dir)
    if truth is not None or compared:
        check_scoring_available()
    if report_dir is not None:
        from uwstego.replay.plots import check_report_available
        check_report_available()
    # The survey joins the frames with the vehicle's navigation, in the report (docs/survey.md).
    nav_topic = choose_nav_topic(source.all_topics, s.nav_topic)
    if s.nav_topic is not None and report_dir is None:
        raise ValueError("--nav-topic makes the survey part of the report: give --report too")

    interrupted: KeyboardInterrupt | None = None
    try:
        models = load_models([bundle, *compared], s)
    except KeyboardInterrupt as exc:  # nothing segmented yet, but the outputs say so
        models, interrupted = [], exc
    objects = _objects(models, s, truth is not None, report_dir)
    total, fps = _rate(source, topic, s.every)
    info_topic = camera_info_topic(topic, source.topics[topic], source.all_topics) \
        if out_bag is not None else None
    stats = ReadStats()

    with contextlib.ExitStack() as report_stack:
        staging = report_stack.enter_context(atomic_dir(report_dir)) if report_dir else None
        if staging is not None:
            staging.chmod(0o755)  # a report is for sharing; the staging folder starts private
        names = model_labels([m.describe() for m in models])
        for model, name in zip(models, names, strict=True):
            untrusted = random_weights_warning(model.describe(), name)
            if untrusted is not None:
                log.warning("%s", untrusted)
        writer = FrameWriter(models, topic, s, out_bag=out_bag,
                             offered_qos=source.output_qos(s.namespace), video=staging, fps=fps,
                             with_truth=truth is not None, labels=names,
                             objects=objects)
        pipeline: Pipeline[Work] = Pipeline(
            lambda: produce(source, topic, s.every, stats, truth, out_bag is not None,
                            info_topic),
            writer.open)
        if interrupted is None:
            run = segment_all(pipeline, models, realtime=s.realtime, total=total,
                              description=f"replay {topic}", progress=s.progress, names=names)
        else:
            run = SegmentRun(stopped="interrupted while loading the models", raised=interrupted)
            with sigint_deferred():
                pipeline.finish()  # an empty, valid output bag
        # The output bag is closed and at its path now; the report comes after it.
        with sigint_deferred():
            summary = _summary(source, topic, s, models, truth, total, stats, run, writer,
                               out_bag, report_dir, info_topic)
            if staging is not None:
                from uwstego.replay.looks import draw_looks
                from uwstego.replay.report import write_report
                sightings = (write_objects(staging, summary, objects)
                             if objects is not None and summary.frames.processed else {})
                looks = draw_looks(staging, summary, models, source.bag, gt_topic=s.gt_topic,
                                   gt_dir=s.gt_dir, alpha=s.overlay_alpha,
                                   read_again=source.frame_at
                                   if isinstance(source, Footage) else None,
                                   extra=sightings)
                summary = dataclasses.replace(summary, outputs=dataclasses.replace(
                    summary.outputs, looks=looks))
                if nav_topic is not None:
                    survey_dive(summary, source.bag, staging / SURVEY_DIR, nav_topic,
                                s.max_nav_gap_s)
                files = write_report(staging, summary)
                summary = dataclasses.replace(summary, outputs=dataclasses.replace(
                    summary.outputs, plots=files.plots, video=files.video))
                write_summary(staging / SUMMARY_FILE, summary)
            report_stack.close()  # moves the report into place
    if run.raised is not None:
        raise run.raised
    return ReplayResult(summary, out_bag, report_dir)


def _with_declared_truth(s: ReplaySettings, source: FrameSource) -> ReplaySettings:
    """The bag's declared ground-truth topic (``uwstego synth`` declares its labels) when no
    ground truth was given and the bag declares exactly one image topic as such."""
    if s.gt_topic or s.gt_dir:
        return s
    declared = [t for t in source.label_topics if t in source.topics]
    if len(declared) != 1:
        return s
    log.info("ground truth: %s, which %s declares as its labels (give --gt-topic or --gt-dir "
             "for other ground truth)", declared[0], source.bag)
    return dataclasses.replace(s, gt_topic=declared[0])


def _objects(models: list[ReplayModel], s: ReplaySettings, with_truth: bool,
             report_dir: Path | None) -> ObjectsRun | None:
    if (s.objects.enabled or s.gt_objects) and report_dir is None:
        raise ValueError("--objects and --gt-objects write into the report folder: give "
                         "--report too")
    if not models:
        return None
    return ObjectsRun.create(models, model_labels([m.describe() for m in models]), s.objects,
                             s.gt_objects, s.gt_names, with_truth, s.object_iou)


def _with_bag_names(s: ReplaySettings, bag: Path) -> ReplaySettings:
    """The ground truth's class names from the bag's metadata unless --gt-names gave them."""
    if s.gt_names is not None or s.gt_topic is None:
        return s
    names = bag_class_names(bag, s.gt_topic)
    if names is None or (s.gt_classes is not None and s.gt_classes != len(names)):
        return s
    return dataclasses.replace(s, gt_names=names)


def _summary(source: FrameSource, topic: str, s: ReplaySettings, models: list[ReplayModel],
             truth: BagGroundTruth | DirGroundTruth | None, total: int | None,
             stats: ReadStats, run: SegmentRun, writer: FrameWriter, out_bag: Path | None,
             report_dir: Path | None, info_topic: str | None) -> ReplaySummary:
    processed = len(writer.frames)
    facts = None if truth is None else truth_facts(truth, s, writer.truth_missing)
    documents = tuple(m.document(models[0], facts, s.gt_names, processed) for m in models)
    names = model_labels([m.bundle for m in documents])
    untrusted = [w for w in (random_weights_warning(m.bundle, name)
                             for m, name in zip(documents, names, strict=True)) if w]
    return ReplaySummary(
        uwstego_version=__version__,
        bag=str(source.bag),
        topic=topic,
        topic_type=source.topics[topic],
        settings=s.to_dict(),
        stopped=run.stopped,
        frames=FrameCounts(
            to_process=total, read=stats.read, processed=processed,
            skipped=stats.skipped + sum(run.refused.values()),
            skip_reasons=dict(stats.reasons) | dict(run.refused),
            damage=tuple(source.damage), errors=tuple(run.errors)),
        wall_s=run.wall_s,
        startup_s=run.first_frame_s,
        # Steady state: from the first frame read to the last frame written.
        throughput_fps=(processed / (run.wall_s - run.first_frame_s)
                        if processed and run.first_frame_s is not None
                        and run.wall_s > run.first_frame_s else None),
        outputs=OutputsDoc(bag=str(out_bag) if out_bag else None,
                           camera_info_copied=info_topic,
                           report=str(report_dir) if report_dir else None),
        models=documents,
        frames_index=tuple(f[0] for f in writer.frames),
        frames_t_ns=tuple(f[1] for f in writer.frames),
        frames_stamp_ns=tuple(f[2] for f in writer.frames),
        frames_input_change=tuple(writer.input_change.values),
        realtime_max_lag_s=run.max_lag_s if s.realtime else None,
        warnings=(*untrusted, *run.warnings),
    )
