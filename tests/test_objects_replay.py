"""Objects in a replay: the objects files, the report section, detection scores, first
sightings, and the command line's one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool
from tests.test_replay import CAMERA, GT, frames, settings, write_bag
from uwstego.bundle import load_bundle
from uwstego.objects import ObjectSettings, Tracker, find_regions
from uwstego.objects.regions import Region
from uwstego.replay.loop import replay
from uwstego.replay.objects_run import INDEX_FILE, OBJECTS_DIR
from uwstego.replay.objects_scoring import matched_pairs
from uwstego.segmenter import Segmenter

TRUE_OBJECTS = ("fish", "debris", "diver", "cable")
MIN_AREA = 6
EIGHT = np.ones((3, 3), dtype=int)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("ob") / "bundle", camera=CAMERA)


@pytest.fixture(scope="module")
def dive():
    synth = pytest.importorskip("uwstego.training.synth")
    return list(synth.generate_dive(synth.DiveSettings(
        seed=4, frames=8, width=96, height=72, fish_density=60.0, diver_prob=1.0,
        cable_prob=1.0, segment_frames=8)))


def _scipy_count(labels: np.ndarray, class_id: int) -> int:
    components, n = ndimage.label(labels == class_id, structure=EIGHT)
    return int((np.bincount(components.ravel(), minlength=n + 1)[1:] >= MIN_AREA).sum())


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_objects_files_report_and_scores(tmp_path, bundle, dive):
    pytest.importorskip("matplotlib")
    from uwstego.training.synth import CLASS_NAMES

    b = load_bundle(bundle)
    names = [c.name for c in b.meta.classes]
    wanted = tuple(names[:2])
    bag = write_bag(tmp_path / "dive", [f.rgb for f in dive], truth=[f.labels for f in dive])
    report = tmp_path / "report"
    result = replay(bag, bundle, settings(
        gt_topic=GT, gt_names=CLASS_NAMES, objects=ObjectSettings(classes=wanted,
                                                                  min_area=MIN_AREA),
        gt_objects=TRUE_OBJECTS), report_dir=report)
    folder = report / OBJECTS_DIR
    assert json.loads((folder / INDEX_FILE).read_text()) == {
        "documents": ["model.json", "ground_truth.json"]}
    model = json.loads((folder / "model.json").read_text())
    truth = json.loads((folder / "ground_truth.json").read_text())

    # Ground truth: the true object counts of every frame against scipy's on the label images.
    ids = [CLASS_NAMES.index(c) for c in TRUE_OBJECTS]
    for frame, doc in zip(dive, truth["frames"], strict=True):
        got = [sum(d["class"] == c for d in doc["detections"]) for c in TRUE_OBJECTS]
        assert got == [_scipy_count(frame.labels, i) for i in ids]
    totals = {c: truth["counts"][c]["detections"] for c in TRUE_OBJECTS}
    assert totals == {c: sum(_scipy_count(f.labels, i) for f in dive)
                      for c, i in zip(TRUE_OBJECTS, ids, strict=True)}
    assert sum(n > 0 for n in totals.values()) >= 3, totals  # debris is tiny at 96x72

    # The model: the detections and track ids of the Segmenter's labels, run directly.
    seg = Segmenter(b, backend="onnxruntime")
    tracker = Tracker(ObjectSettings(classes=wanted, min_area=MIN_AREA))
    direct, preds = [], []
    for i, f in enumerate(dive):
        labels = seg.segment(f.rgb).labels
        preds.append(labels)
        found = tracker.update(find_regions(labels, [0, 1], MIN_AREA), labels.shape, i, 0)
        direct.append([(d.track_id, d.region.bbox, d.region.area) for d in found])
    recorded = [[(d["track_id"], tuple(d["bbox"]), d["area"]) for d in doc["detections"]]
                for doc in model["frames"]]
    assert recorded == direct and any(direct)
    assert len(model["tracks"]) == tracker.issued
    assert len(_read_csv(folder / "model_detections.csv")) == sum(map(len, direct))
    tracks_csv = _read_csv(folder / "model_tracks.csv")
    assert [int(r["track_id"]) for r in tracks_csv] == [t["track_id"] for t in model["tracks"]]
    assert all((folder / t["thumbnail"]).is_file() for t in model["tracks"] if t["thumbnail"])

    # Scores: true objects and detections of the matched cluster, as counted independently.
    assignment = result.summary.primary.ground_truth.scores.assignment
    matched_any = False
    for s, class_id in zip(model["detection_scores"], ids, strict=True):
        cluster = assignment[class_id]
        assert s["true_objects"] == sum(_scipy_count(f.labels, class_id) for f in dive)
        if not 0 <= cluster < len(names):  # more true classes than clusters: no match
            assert s["matched_cluster"] is None and s["detections"] == s["matched"] == 0
            continue
        matched_any = True
        assert s["matched_cluster"] == names[cluster]
        assert s["detections"] == sum(_scipy_count(p, cluster) for p in preds)
        assert 0 <= s["matched"] <= min(s["true_objects"], s["detections"])
        if s["true_objects"]:
            assert s["recall"] == pytest.approx(s["matched"] / s["true_objects"])
    assert matched_any, assignment

    page = (report / "index.html").read_text()
    assert "<h2>Objects</h2>" in page and "Detection of the true objects" in page
    assert "first sighting of" in page
    assert any(r.startswith("first sighting of") for look in result.summary.outputs.looks
               for r in look.reasons)


def test_matched_pairs_takes_each_region_once():
    def box(x, y, w, h):
        return Region(0, (x, y, w, h), (x + w / 2, y + h / 2), w * h, None, None, False)

    truth = [box(0, 0, 10, 10), box(20, 0, 10, 10), box(50, 50, 4, 4)]
    found = [box(1, 0, 10, 10), box(0, 1, 10, 10), box(21, 1, 10, 10)]
    assert matched_pairs(truth, found, 0.5) == 2  # the second box near the first is spare
    assert matched_pairs(truth, found, 0.95) == 0
    assert matched_pairs(truth, [], 0.5) == 0


def test_bad_object_options_are_one_line_errors(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(2))
    report = tmp_path / "report"
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--report", report,
                       "--objects", "no_such_class", "--no-progress")
    assert_one_line_error(outcome, "no_such_class", "cluster_0")
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--objects", "cluster_0",
                       "--no-progress")
    assert_one_line_error(outcome, "--report")
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--report", report,
                       "--objects", "cluster_0", "--object-min-area", "0", "--no-progress")
    assert_one_line_error(outcome, "min_area")
    assert not report.exists()
