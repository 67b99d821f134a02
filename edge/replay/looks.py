"""Frames to look at: the few frames of a replay that a reviewer should see, drawn as images.

Chosen after the run from the summary's per-frame series (so the run itself pays nothing per
frame): the lowest mean confidence, the most disagreement between compared models (after
matching), the most novel pixels (bundles with a novelty calibration), the most label flicker
and, with ground truth, the worst mIoU. A reason with nothing to show picks no frame (no novel
pixel, no pixel differing between models), and label flicker at a scene cut (the input image
itself jumps: :func:`uwstego.replay.metrics.scene_cuts`) is the scene changing, not the model, so
those frames are left out of it. Only the chosen frames
are read again from the bag (by log time) and segmented again by every model, with the
segmenters' temporal state reset, so a picture may differ slightly from the frame as replayed.
Each frame is one full-size JPEG (input | overlay of each model | ground truth when present,
captioned) and a small one for the page, in :data:`LOOKS_DIR` of the report folder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from uwstego.atomic import write_bytes_atomic
from uwstego.bags import BagImage, ReadStats, decode_bag_image, open_bag
from uwstego.contract import IGNORE_LABEL
from uwstego.replay.metrics import scene_cuts
from uwstego.replay.models import ReplayModel
from uwstego.replay.source import DirGroundTruth, fit_labels, labels_from_image
from uwstego.replay.summary import LookDoc, ReplaySummary, model_labels
from uwstego.replay.video import caption
from uwstego.rosimage import encode_jpeg
from uwstego.visualize import UNKNOWN_COLOR, overlay

log = logging.getLogger(__name__)

LOOKS_DIR = "frames"
PER_REASON = 3  # frames per reason
THUMB_PANEL_WIDTH = 220  # pixels per panel of a thumbnail ...
THUMB_MAX_WIDTH = 700  # ... and for the whole strip, so that two fit side by side
IGNORE_COLOR = (255, 255, 255)
TRUTH_WINDOW_NS = 1_000_000_000  # as the replay's own matching (BagGroundTruth)

Pick = tuple[int, str]  # (position among the processed frames, why)


def _extremes(values: Sequence[float | None], lowest: bool, n: int) -> list[int]:
    """Positions of the ``n`` lowest (or highest) values, ``None`` and NaN left out, at least
    a ``1 / (4 n)`` share of the run apart: neighbouring frames look alike, so the next frame
    of a bad stretch says less than the worst frame of another stretch."""
    known = [(v, i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    known.sort(key=lambda vi: vi[0], reverse=not lowest)
    gap = len(values) // (4 * n) if n else 0
    chosen: list[int] = []
    for _, i in known:
        if len(chosen) == n:
            break
        if all(abs(i - j) > gap for j in chosen):
            chosen.append(i)
    return chosen


def pick_frames(summary: ReplaySummary, per_reason: int = PER_REASON) -> dict[int, list[str]]:
    """Position -> the reasons (each with its figure) it was picked for, in frame order."""
    if not summary.models or not summary.frames.processed:
        return {}
    primary = summary.primary
    labels = model_labels([m.bundle for m in summary.models])
    picks: list[Pick] = []

    def add(values: Sequence[float | None], lowest: bool, why: Callable[[float], str],
            shows: Callable[[int, float], bool] = lambda _i, _v: True) -> None:
        """Pick the extremes of ``values`` among the frames that ``shows`` something for the
        reason: a reason with nothing to show (no novel pixel, no difference) is no reason."""
        values = [v if v is not None and shows(i, v) else None for i, v in enumerate(values)]
        for i in _extremes(values, lowest, per_reason):
            value = values[i]
            assert value is not None
            picks.append((i, why(value)))

    add(primary.series.confidence_mean, True,
        lambda v: f"lowest confidence (mean cosine similarity {v:.3f}, {labels[0]})")
    for model, label in zip(summary.compared, labels[1:], strict=True):
        if model.agreement is not None:
            add(model.agreement.over_time.get("accuracy", ()), True,
                lambda v, label=label: f"models disagree most ({label}: {100 - v:.1f}% of "
                                       f"pixels differ from {labels[0]} after matching)",
                lambda _i, v: v < 100.0)
    add(primary.series.novel_fraction, False,  # empty without a novelty calibration
        lambda v: f"most novel ({100 * v:.1f}% of pixels beyond their class's novelty "
                  f"threshold, {labels[0]})", lambda _i, v: v > 0.0)
    cuts = scene_cuts(summary.frames_input_change)  # the scene changed, not the labels
    add(primary.series.flicker, False,
        lambda v: f"most label flicker ({100 * v:.1f}% of pixels changed label)",
        lambda i, v: v > 0.0 and i not in cuts)
    truth = primary.ground_truth
    if truth is not None and truth.scores is not None:
        add(truth.scores.over_time.get("mIoU", ()), True,
            lambda v: f"worst scored against the ground truth (mIoU {v:.1f}%, {labels[0]})")
    chosen: dict[int, list[str]] = {}
    for position, why in picks:
        chosen.setdefault(position, []).append(why)
    return dict(sorted(chosen.items()))


def truth_palette(summary: ReplaySummary) -> np.ndarray:
    """Ground-truth class i in the colour of the first model's cluster matched to it, so that
    the truth and the overlay can be compared by eye; grey where nothing is matched."""
    lut = np.empty((256, 3), dtype=np.uint8)
    lut[:] = UNKNOWN_COLOR
    lut[IGNORE_LABEL] = IGNORE_COLOR
    truth = summary.primary.ground_truth
    colors = summary.primary.bundle.class_colors
    if truth is not None and truth.scores is not None:
        for gt_class, cluster in enumerate(truth.scores.assignment):
            if 0 <= cluster < len(colors) and gt_class < IGNORE_LABEL:
                lut[gt_class] = colors[cluster]
    return lut


def _read_frame(bag: Path, topic: str, t_ns: int, index: int) -> BagImage | None:
    for msg in open_bag(bag).messages((topic,), start_ns=t_ns, stop_ns=t_ns + 1):
        return decode_bag_image(msg, index, ReadStats())
    return None


def _bag_truth(bag: Path, topic: str, frame: BagImage) -> np.ndarray | None:
    """The label image on ``topic`` with the frame's header stamp, stored within the replay's
    matching window of the frame."""
    window = TRUTH_WINDOW_NS
    for msg in open_bag(bag).messages((topic,), start_ns=max(0, frame.t_ns - window),
                                      stop_ns=frame.t_ns + window):
        image = decode_bag_image(msg, 0, ReadStats())
        if image is not None and image.stamp_ns == frame.stamp_ns:
            return labels_from_image(image.rgb)
    return None


def _resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """Shrunk to ``width`` (never enlarged)."""
    import cv2

    if width >= image.shape[1]:
        return image
    height = max(2, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _strip(frame: BagImage, models: Sequence[ReplayModel], labels: Sequence[str], t_s: float,
           bag: Path, gt_topic: str | None, truth_dir: DirGroundTruth | None,
           gt_lut: np.ndarray, alpha: float) -> np.ndarray:
    """Input | each model's overlay | ground truth, captioned, side by side."""
    panels = [caption(frame.rgb, f"input  t = {t_s:.2f} s  (frame {frame.index})")]
    for model, label in zip(models, labels, strict=True):
        model.segmenter.reset()
        seg = model.segmenter.segment(frame.rgb)
        model.segmenter.reset()
        panels.append(caption(overlay(frame.rgb, seg.labels, model.lut, alpha), label))
    gt = (_bag_truth(bag, gt_topic, frame) if gt_topic
          else truth_dir.lookup(frame) if truth_dir is not None else None)
    if gt is not None:
        gt = fit_labels(gt, frame.rgb.shape[:2])
        panels.append(caption(overlay(frame.rgb, gt, gt_lut, 1.0), "ground truth"))
    return np.hstack(panels)


def draw_looks(folder: Path, summary: ReplaySummary, models: Sequence[ReplayModel], bag: Path,
               *, gt_topic: str | None, gt_dir: Path | None, alpha: float,
               per_reason: int = PER_REASON,
               read_again: Callable[[int], BagImage | None] | None = None,
               extra: Mapping[int, Sequence[str]] | None = None) -> tuple[LookDoc, ...]:
    """Pick the frames, draw them into ``folder / LOOKS_DIR`` and describe them; a frame that
    cannot be read again is left out (logged). ``read_again``: frame by index, for footage
    that is not a bag (:meth:`uwstego.replay.footage.Footage.frame_at`); ``extra``: more picks
    (position -> reasons), such as the first sightings of objects."""
    chosen = pick_frames(summary, per_reason)
    for position, reasons in (extra or {}).items():
        chosen.setdefault(position, []).extend(reasons)
    chosen = dict(sorted(chosen.items()))
    if not chosen:
        return ()
    out = folder / LOOKS_DIR
    out.mkdir(exist_ok=True)
    labels = model_labels([m.bundle for m in summary.models])
    gt_lut = truth_palette(summary)
    truth_dir = DirGroundTruth(gt_dir) if gt_dir is not None else None
    t0 = summary.frames_t_ns[0]
    docs = []
    for position, reasons in chosen.items():
        index, t_ns = summary.frames_index[position], summary.frames_t_ns[position]
        try:
            frame = read_again(index) if read_again is not None \
                else _read_frame(bag, summary.topic, t_ns, index)
            if frame is None:
                raise ValueError("it could not be read again")
            strip = _strip(frame, models, labels, (t_ns - t0) / 1e9, bag, gt_topic, truth_dir,
                           gt_lut, alpha)
            panels = strip.shape[1] // frame.rgb.shape[1]
        except ValueError as exc:  # one frame that cannot be drawn costs only its picture
            log.warning("frame %d not drawn for the report: %s", index, exc)
            continue
        name = f"{index:06d}"
        write_bytes_atomic(out / f"{name}.jpg", encode_jpeg(strip, 90).tobytes())
        thumb = _resize_to_width(strip, min(THUMB_MAX_WIDTH, THUMB_PANEL_WIDTH * panels))
        write_bytes_atomic(out / f"{name}_thumb.jpg", encode_jpeg(thumb, 80).tobytes())
        docs.append(LookDoc(position=position, index=index, t_s=(t_ns - t0) / 1e9,
                            reasons=tuple(reasons),
                            image=f"{LOOKS_DIR}/{name}.jpg",
                            thumbnail=f"{LOOKS_DIR}/{name}_thumb.jpg"))
    return tuple(docs)
