"""The replay's segmenting stage: the calling thread runs every model on each frame.

Inference releases the GIL, so the reader and writer threads overlap it. Whatever stops the
loop (the end of the bag, Ctrl-C, an error in any stage, also during the warm-up before the
first frame), the pipeline is finished: the frames already segmented are written and the
outputs closed. The exception that stopped the run is returned, for the caller to raise once
the summary and report are written.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from uwstego.image_size import Size
from uwstego.replay.models import ReplayModel
from uwstego.replay.pipeline import Pipeline, sigint_deferred
from uwstego.replay.reading import Work

log = logging.getLogger(__name__)

_SWITCH_INTERVAL_S = 0.001  # Python's default is 5 ms


@dataclass
class SegmentRun:
    """How the segmenting went."""

    stopped: str = "completed"  # "interrupted", "error: ..."
    raised: BaseException | None = None
    refused: Counter[str] = field(default_factory=Counter)  # segmenter's reason -> frames
    wall_s: float = 0.0
    first_frame_s: float | None = None  # from the start until the first frame was read
    max_lag_s: float = 0.0  # --realtime: the most a frame was late
    errors: list[str] = field(default_factory=list)  # the reader's and writer's failures
    warnings: list[str] = field(default_factory=list)  # said once each, for the report too


def segment_all(pipeline: Pipeline[Work], models: Sequence[ReplayModel], *, realtime: bool,
                total: int | None, description: str, progress: bool,
                names: Sequence[str] = ()) -> SegmentRun:
    """Run ``models`` (called ``names`` in warnings) over the pipeline's frames until the end
    or a stop; see the module."""
    from tqdm import tqdm

    run = SegmentRun()
    bar = None
    t0 = time.perf_counter()
    switch = sys.getswitchinterval()
    try:
        bar = tqdm(total=total, unit="frame", disable=not progress, desc=description)
        for model in models:
            model.warm_up()
        t0 = time.perf_counter()
        # The reader and writer hold the GIL in long pure-Python stretches (rosbags); a short
        # switch interval hands it back to inference as soon as ONNX Runtime returns.
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        pipeline.start()
        first_t_ns: int | None = None
        sizes: set[Size] = set()
        for work in pipeline.frames():
            _check_size(Size.of(work.frame.rgb), sizes, models, names, run)
            if run.first_frame_s is None:
                run.first_frame_s = time.perf_counter() - t0
            if realtime:
                first_t_ns = work.frame.t_ns if first_t_ns is None else first_t_ns
                due = t0 + run.first_frame_s + (work.frame.t_ns - first_t_ns) / 1e9
                lag = time.perf_counter() - due
                if lag < 0:
                    time.sleep(-lag)
                run.max_lag_s = max(run.max_lag_s, lag)
            try:
                work.segs = [m.segmenter.segment(work.frame.rgb) for m in models]
            except ValueError as exc:
                run.refused[str(exc)] += 1
                log.warning("frame %d refused by the segmenter: %s", work.frame.index, exc)
                if not work.companions:
                    continue
                work.segs = []  # the writer still copies the companion messages
            if not pipeline.put(pipeline.outbox, work):
                break
            bar.update()
    except KeyboardInterrupt as exc:
        run.stopped, run.raised = "interrupted", exc
        log.warning("interrupted: finishing the frames already segmented")
    except BaseException as exc:
        run.stopped, run.raised = f"error: {type(exc).__name__}: {exc}", exc
    finally:
        with sigint_deferred():
            pipeline.finish()
            if bar is not None:
                bar.close()
        sys.setswitchinterval(switch)
    run.wall_s = time.perf_counter() - t0
    run.errors = pipeline.errors
    if pipeline.failures and run.raised is None:
        # The exception itself, so that the CLI reports a bad path or a full disk as such.
        run.stopped, run.raised = f"error: {run.errors[0]}", pipeline.failures[0][1]
    return run


def _check_size(size: Size, seen: set[Size], models: Sequence[ReplayModel], names: Sequence[str],
                run: SegmentRun) -> None:
    """Warn once per frame size that a model stretches to another aspect ratio."""
    if size in seen:
        return
    seen.add(size)
    for position, model in enumerate(models):
        name = names[position] if position < len(names) else model.role
        warning = model.stretch_warning(size, name)
        if warning is not None:
            log.warning("%s", warning)
            run.warnings.append(warning)
