"""A replay's objects: recorded while the frames are written, saved beside the report.

``uwstego replay --objects NAMES`` records the objects of every model that has those classes;
with ground truth, ``--gt-objects NAMES`` (default: the ``--objects`` names that are also
ground-truth classes) records the true objects and scores each model's detections of them. The
files go into ``<report>/objects/`` (docs/objects.md "Files"): per source ``<role>.json`` (every
track and every frame's detections), ``<role>_tracks.csv`` and ``<role>_detections.csv``,
thumbnails in ``thumbs/``, and ``index.json`` naming the sources in order.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uwstego.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from uwstego.bags import BagImage
from uwstego.objects import ObjectSettings, object_class_ids
from uwstego.replay.models import ReplayModel
from uwstego.replay.objects_record import ObjectRecorder, TrackRecord
from uwstego.replay.objects_scoring import DetectionCounts
from uwstego.replay.summary import ReplaySummary
from uwstego.rosimage import encode_jpeg
from uwstego.segmenter import Segmentation

log = logging.getLogger(__name__)

OBJECTS_DIR = "objects"
INDEX_FILE = "index.json"
TRUTH_ROLE = "ground_truth"
THUMBS_DIR = "thumbs"
THUMBS_PER_CLASS = 12  # tracks per class with a thumbnail (the most seen ones)
FIRST_SIGHTINGS_PER_CLASS = 3  # first-sighting frames per class among the frames to look at
TRACK_COLUMNS = ("track_id", "class", "first_index", "first_t_ns", "first_stamp_ns",
                 "first_t_s", "last_index", "last_t_ns", "last_t_s", "frames_seen",
                 "largest_area", "largest_index", "largest_bbox", "thumbnail")
DETECTION_COLUMNS = ("index", "t_ns", "stamp_ns", "track_id", "class", "x", "y", "width",
                     "height", "centroid_x", "centroid_y", "area", "confidence", "novelty",
                     "touches_border")



class ObjectsRun:
    """The recorders of one replay: one per model with the object classes, one for the ground
    truth, and each model's detection counts against it."""

    def __init__(self, models: Sequence[ReplayModel], labels: Sequence[str],
                 settings: ObjectSettings, gt_objects: Sequence[str] = (),
                 gt_names: Sequence[str] | None = None, iou: float = 0.5) -> None:
        self.models: list[tuple[ReplayModel, ObjectRecorder | None]] = []
        for i, (model, label) in enumerate(zip(models, labels, strict=True)):
            recorder = None
            if settings.enabled:
                try:
                    ids = object_class_ids(settings.classes, model.class_names,
                                           f"bundle {model.bundle.path}")
                except ValueError:
                    if i == 0:
                        raise
                    log.warning("compared bundle %s lacks some of the object classes %s: its "
                                "objects are not recorded", model.bundle.path,
                                ", ".join(settings.classes))
                else:
                    recorder = ObjectRecorder(label, model.class_names, ids, settings)
            self.models.append((model, recorder))
        self.truth: ObjectRecorder | None = None
        self.counts: list[DetectionCounts] = []
        if gt_objects:
            if gt_names is None:
                raise ValueError("--gt-objects needs the ground-truth class names: give "
                                 "--gt-names, or replay a bag written by uwstego synth")
            truth_ids = object_class_ids(gt_objects, gt_names, "the ground truth")
            self.truth = ObjectRecorder("ground truth", gt_names, truth_ids,
                                        dataclasses.replace(settings, classes=tuple(gt_objects)))
            self.counts = [DetectionCounts(truth_ids, len(m.class_names), settings.min_area,
                                           iou) for m in models]

    @classmethod
    def create(cls, models: Sequence[ReplayModel], labels: Sequence[str],
               settings: ObjectSettings, gt_objects: Sequence[str] | None,
               gt_names: Sequence[str] | None, with_truth: bool,
               iou: float) -> ObjectsRun | None:
        """None when nothing is asked; ValueError naming a class that does not exist."""
        if gt_objects is None:  # by default the object classes the ground truth has too
            gt_objects = [c for c in settings.classes if gt_names and c in gt_names]
        gt_objects = list(gt_objects) if with_truth else []
        if not settings.enabled and not gt_objects:
            return None
        return cls(models, labels, settings, gt_objects, gt_names, iou)

    def add(self, position: int, frame: BagImage, segs: Sequence[Segmentation],
            truth: Any) -> None:
        """One written frame: ``segs`` per model, ``truth`` its label image or None."""
        for (_, recorder), seg in zip(self.models, segs, strict=True):
            if recorder is not None:
                recorder.add(position, frame, seg.labels, seg.confidence, seg.novelty)
        if self.truth is None or truth is None:
            return
        true = [d.region for d in self.truth.add(position, frame, truth)]
        for counts, seg in zip(self.counts, segs, strict=True):
            counts.add(seg.labels, true)


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _detection_rows(recorder: ObjectRecorder) -> list[dict[str, Any]]:
    rows = []
    for frame in recorder.frames:
        for det in frame["detections"]:
            x, y, w, h = det["bbox"]
            rows.append({"index": frame["index"], "t_ns": frame["t_ns"],
                         "stamp_ns": frame["stamp_ns"], "track_id": det["track_id"],
                         "class": det["class"], "x": x, "y": y, "width": w, "height": h,
                         "centroid_x": det["centroid"][0], "centroid_y": det["centroid"][1],
                         "area": det["area"], "confidence": det["confidence"],
                         "novelty": det["novelty"], "touches_border": det["touches_border"]})
    return rows


def _shown(tracks: Sequence[TrackRecord], per_class: int) -> list[TrackRecord]:
    """The ``per_class`` most seen tracks of each class (ties: the first seen)."""
    chosen: list[TrackRecord] = []
    for name in dict.fromkeys(t.class_name for t in tracks):
        same = sorted((t for t in tracks if t.class_name == name),
                      key=lambda t: (-t.frames_seen, t.first_t_ns))
        chosen += same[:per_class]
    return chosen


def _document(folder: Path, role: str, recorder: ObjectRecorder, t0_ns: int,
              scores: list[dict[str, Any]] | None, bundle: str | None) -> dict[str, Any]:
    tracks = list(recorder.tracks.values())
    thumbs: dict[int, str] = {}
    for track in _shown(tracks, THUMBS_PER_CLASS):
        if track.thumbnail is not None:
            name = f"{THUMBS_DIR}/{role}_{track.id}.jpg"
            write_bytes_atomic(folder / name, encode_jpeg(track.thumbnail, 85).tobytes())
            thumbs[track.id] = name
    counts = {}
    for name in (recorder.class_names[i] for i in recorder.class_ids):
        counts[name] = {
            "tracks": sum(t.class_name == name for t in tracks),
            "detections": sum(d["class"] == name for f in recorder.frames
                              for d in f["detections"]),
            "frames_with": sum(any(d["class"] == name for d in f["detections"])
                               for f in recorder.frames)}
    track_docs = [{**t.to_dict(t0_ns), "thumbnail": thumbs.get(t.id)} for t in tracks]
    doc = {"source": recorder.source, "role": role, "bundle": bundle,
           "object_classes": [recorder.class_names[i] for i in recorder.class_ids],
           "settings": dataclasses.asdict(recorder.settings), "frames_processed":
           len(recorder.frames), "counts": counts, "detection_scores": scores,
           "tracks": track_docs, "frames": recorder.frames}
    write_json_atomic(folder / f"{role}.json", doc)
    write_text_atomic(folder / f"{role}_tracks.csv", _csv(track_docs, TRACK_COLUMNS))
    write_text_atomic(folder / f"{role}_detections.csv",
                      _csv(_detection_rows(recorder), DETECTION_COLUMNS))
    return doc


def write_objects(report: Path, summary: ReplaySummary, run: ObjectsRun) -> dict[int, list[str]]:
    """The objects files into ``report / OBJECTS_DIR``; returns the first-sighting frames
    (position -> reasons) for the frames to look at."""
    folder = report / OBJECTS_DIR
    t0 = summary.frames_t_ns[0] if summary.frames_t_ns else 0
    files = []
    for (model, recorder), doc, counts in zip(
            run.models, summary.models, run.counts or [None] * len(run.models), strict=True):
        if recorder is None:
            continue
        truth = doc.ground_truth.scores if doc.ground_truth is not None else None
        scores = (counts.scores(truth.assignment, run.truth.class_names, model.class_names)
                  if counts is not None and truth is not None and run.truth is not None
                  else None)
        _document(folder, model.role, recorder, t0, scores, str(model.bundle.path))
        files.append(f"{model.role}.json")
    if run.truth is not None:
        # Scores of models without object classes go with the ground truth's document.
        scores = []
        for (model, _), doc, counts in zip(run.models, summary.models, run.counts, strict=True):
            truth = doc.ground_truth.scores if doc.ground_truth is not None else None
            if truth is not None:
                scores.append({"model": model.role, "scores": counts.scores(
                    truth.assignment, run.truth.class_names, model.class_names)})
        _document(folder, TRUTH_ROLE, run.truth, t0, scores, None)
        files.append(f"{TRUTH_ROLE}.json")
    write_json_atomic(folder / INDEX_FILE, {"documents": files})
    return first_sightings(run)


def first_sightings(run: ObjectsRun,
                    per_class: int = FIRST_SIGHTINGS_PER_CLASS) -> dict[int, list[str]]:
    """The frames where the most seen tracks of each class of the first model appeared."""
    recorder = run.models[0][1] if run.models else None
    if recorder is None:
        return {}
    picks: dict[int, list[str]] = {}
    for track in _shown(list(recorder.tracks.values()), per_class):
        picks.setdefault(track.first_position, []).append(
            f"first sighting of {track.class_name} #{track.id} (then seen in "
            f"{track.frames_seen} frames, largest {track.largest_area} px)")
    return picks
