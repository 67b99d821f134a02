"""One replayed dive joined with its navigation: the survey table, its files and figures.

Input: the replay's summary (per-frame coverage, novel share and header stamps of the processed
frames) and the input bag (navigation, and the ground-truth topic the replay scored against).
Output, in the folder given (docs/survey.md §4-5)::

    survey.csv            one row per frame (edge/survey/table.py)
    survey.geojson        the same as points, when the navigation is geographic
    survey_truth.csv      the same table for the ground-truth labels, when the replay had them
    survey.json           the dive's figures: duration, distance, frames, frames without a
                          position, mean percent cover per class, novel share, cover error
    survey_map.png        the track coloured by dominant class      (with matplotlib)
    survey_cover.png      percent cover per class over distance      (with matplotlib)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.atomic import write_json_atomic
from uwstego.bags import open_bag
from uwstego.replay.summary import ReplaySummary
from uwstego.survey.navigation import DEFAULT_MAX_GAP_S, Positions, read_navigation
from uwstego.survey.table import SurveyTable, cover_table, write_csv, write_geojson
from uwstego.survey.truth import truth_cover

log = logging.getLogger(__name__)

SURVEY_JSON = "survey.json"


@dataclass(frozen=True)
class CoverError:
    """Model cover against ground-truth cover per ground-truth class, in percentage points,
    after the replay's cluster-to-class matching: ``per_frame_mae`` is the mean absolute error
    over frames, ``dive`` the error of the dive's mean cover (the survey's figure)."""

    per_frame_mae: dict[str, float | None]
    dive: dict[str, float | None]
    frames: int


@dataclass(frozen=True)
class DiveSurvey:
    bag: str
    nav_topic: str | None
    geographic: bool
    frames: int
    frames_without_position: int
    duration_s: float
    distance_m: float
    mean_cover_pct: dict[str, float | None]
    novel_pct: float | None
    files: tuple[str, ...] = ()
    truth_cover_pct: dict[str, float | None] | None = None
    cover_error: CoverError | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_table(summary: ReplaySummary, positions: Positions) -> SurveyTable:
    model = summary.primary
    classes = tuple(model.bundle.classes)
    novel = (100.0 * np.asarray(model.series.novel_fraction)
             if model.series.novel_fraction else None)
    return SurveyTable(np.asarray(summary.frames_index), np.asarray(summary.frames_stamp_ns),
                       positions, classes, cover_table(model.series.coverage, classes), novel)


def _truth(summary: ReplaySummary, bag_path: Path, positions: Positions,
           model: SurveyTable) -> tuple[SurveyTable, CoverError] | None:
    truth = summary.primary.ground_truth
    if truth is None or truth.scores is None or not truth.n_classes:
        return None
    bag = open_bag(bag_path)
    if truth.source not in bag.topics:  # a folder of PNGs: the survey reads bags only
        return None
    names = tuple(truth.scores.per_class_iou)
    cover = 100.0 * truth_cover(bag, truth.source, summary.frames_stamp_ns, len(names))
    table = SurveyTable(model.index, model.stamp_ns, positions, names, cover)
    # The model's cover of each ground-truth class is the cover of the cluster matched to it;
    # a class no cluster was matched to is never predicted.
    matched = np.zeros_like(cover)
    for k, cluster in enumerate(truth.scores.assignment):
        if 0 <= cluster < model.cover.shape[1]:
            matched[:, k] = model.cover[:, cluster]
    both = ~np.isnan(cover).any(axis=1) & ~np.isnan(matched).any(axis=1)
    per_frame: dict[str, float | None] = {}
    dive: dict[str, float | None] = {}
    for k, name in enumerate(names):
        if not both.any():
            per_frame[name] = dive[name] = None
            continue
        diff = matched[both, k] - cover[both, k]
        per_frame[name] = round(float(np.abs(diff).mean()), 3)
        dive[name] = round(float(abs(matched[both, k].mean() - cover[both, k].mean())), 3)
    return table, CoverError(per_frame, dive, int(both.sum()))


def survey_dive(summary: ReplaySummary, bag_path: str | Path, out: str | Path,
                nav_topic: str | None = None, max_gap_s: float = DEFAULT_MAX_GAP_S,
                figures: bool = True) -> DiveSurvey:
    """Join a replay with its bag's navigation and write the survey files into ``out``."""
    bag_path, out = Path(bag_path), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    track = read_navigation(open_bag(bag_path), nav_topic)
    stamps = np.asarray(summary.frames_stamp_ns, dtype=np.int64)
    notes: list[str] = []
    if track is None:
        nan = np.full(stamps.shape, np.nan)
        positions = Positions(nan, nan.copy(), nan.copy(), np.zeros(stamps.shape, bool))
        notes.append("the bag has no navigation topic (nav_msgs/Odometry or "
                     "sensor_msgs/NavSatFix): frames have no position")
    else:
        positions = track.at(stamps, max_gap_s)
    table = model_table(summary, positions)
    missing = table.frames_without_position
    if track is not None and missing:
        notes.append(f"{missing} of {len(stamps)} frames have no position (outside the "
                     f"navigation track or in a gap over {max_gap_s:g} s)")
    for note in notes:
        log.warning("%s: %s", bag_path, note)
    files = [write_csv(table, out / "survey.csv").name]
    if table.geographic:
        files.append(write_geojson(table, out / "survey.geojson",
                                   {"bag": str(bag_path), "nav_topic": track.topic}).name)
    truth = _truth(summary, bag_path, positions, table)
    if truth is not None:
        files.append(write_csv(truth[0], out / "survey_truth.csv").name)
    if figures and len(stamps):
        from uwstego.survey.figures import cover_over_distance, track_map

        colors = dict(zip(table.classes, summary.primary.bundle.class_colors, strict=False))
        files.append(track_map(table, colors, out / "survey_map.png").name)
        files.append(cover_over_distance(table, colors, out / "survey_cover.png").name)
    novel = (round(float(np.nanmean(table.novel)), 3)
             if table.novel is not None and len(table.novel) else None)
    result = DiveSurvey(
        bag=str(bag_path), nav_topic=track.topic if track else None, geographic=table.geographic,
        frames=len(stamps), frames_without_position=missing,
        duration_s=round(float((stamps[-1] - stamps[0]) / 1e9), 3) if len(stamps) else 0.0,
        distance_m=round(float(positions.distance_m()[-1]), 3) if len(stamps) else 0.0,
        mean_cover_pct=table.mean_cover(), novel_pct=novel, files=tuple(files),
        truth_cover_pct=truth[0].mean_cover() if truth else None,
        cover_error=truth[1] if truth else None, notes=tuple(notes))
    write_json_atomic(out / SURVEY_JSON, result.to_dict())
    return result
