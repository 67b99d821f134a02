"""Objects and tracks (edge/objects): regions against an independent count, tracks over frames."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from uwstego.objects import ObjectSettings, Tracker, find_regions, object_class_ids
from uwstego.training.synth import CLASS_NAMES, DiveSettings, generate_dive

OBJECT_CLASSES = ("fish", "debris", "diver", "cable")
MIN_AREA = 6
EIGHT = np.ones((3, 3), dtype=int)


@pytest.fixture(scope="module")
def dive_labels() -> list[np.ndarray]:
    # Seed 4 with a diver in every segment: fish, debris, the diver and a cable in view.
    settings = DiveSettings(seed=4, frames=12, width=160, height=120, fish_density=60.0,
                            diver_prob=1.0, cable_prob=1.0, degrade=False, segment_frames=12)
    return [f.labels for f in generate_dive(settings)]


def _scipy_regions(labels: np.ndarray, class_id: int, min_area: int) -> list[tuple]:
    """(area, x, y, w, h) of every 8-connected region of ``class_id`` with scipy, as ground
    truth for the OpenCV path."""
    components, n = ndimage.label(labels == class_id, structure=EIGHT)
    areas = np.bincount(components.ravel(), minlength=n + 1)
    out = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if areas[index] >= min_area:
            ys, xs = box
            out.append((int(areas[index]), xs.start, ys.start, xs.stop - xs.start,
                        ys.stop - ys.start))
    return sorted(out)


def test_dive_object_counts_match_an_independent_count(dive_labels):
    ids = object_class_ids(OBJECT_CLASSES, CLASS_NAMES, "the synthetic dive")
    totals = dict.fromkeys(OBJECT_CLASSES, 0)
    for labels in dive_labels:
        regions = find_regions(labels, ids, MIN_AREA)
        for name, class_id in zip(OBJECT_CLASSES, ids, strict=True):
            ours = sorted((r.area, *r.bbox) for r in regions if r.class_id == class_id)
            assert ours == _scipy_regions(labels, class_id, MIN_AREA), name
            totals[name] += len(ours)
    # The dive was drawn to hold every kind of object: the comparison is not over empty sets.
    assert all(totals.values()), totals


def test_region_figures():
    labels = np.zeros((40, 60), np.uint8)
    labels[5:15, 10:20] = 1  # 100 px inside
    labels[30:40, 0:4] = 1  # 40 px on the border
    labels[20:22, 30:32] = 1  # 4 px: below min_area
    labels[0:3, 50:60] = 2
    confidence = np.full(labels.shape, 0.2, np.float32)
    confidence[5:15, 10:20] = 0.9
    novelty = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    regions = find_regions(labels, [1, 2], 10, confidence, novelty)
    assert [(r.class_id, r.area, r.bbox, r.touches_border) for r in regions] == [
        (1, 100, (10, 5, 10, 10), False), (1, 40, (0, 30, 4, 10), True),
        (2, 30, (50, 0, 10, 3), True)]
    first = regions[0]
    assert first.centroid == pytest.approx((14.5, 9.5))
    assert first.confidence == pytest.approx(0.9)
    assert first.novelty == pytest.approx(float(novelty[5:15, 10:20].mean()), rel=1e-5)
    assert find_regions(labels, [1], 10)[0].confidence is None


def _square(shape, x, y, size=8, class_id=1):
    labels = np.zeros(shape, np.uint8)
    labels[y:y + size, x:x + size] = class_id
    return labels


def test_tracks_keep_ids_through_motion_and_short_dropouts():
    shape = (100, 200)
    tracker = Tracker(ObjectSettings(classes=("a",), min_area=4, max_missed=2))
    ids, seen = [], []
    for frame in range(12):
        labels = np.zeros(shape, np.uint8)
        if frame not in (4, 5):  # two frames of dropout
            labels |= _square(shape, 10 + 6 * frame, 20)  # moves 6 px a frame (> its overlap)
        labels |= _square(shape, 150, 70, class_id=2)  # a still object of another class
        dets = tracker.update(find_regions(labels, [1, 2], 4), shape, frame, frame * 100)
        ids.append({d.region.class_id: d.track_id for d in dets})
        seen.append({d.region.class_id: d.frames_seen for d in dets})
    moving = {i[1] for i in ids if 1 in i}
    assert moving == {ids[0][1]}, ids
    assert {i[2] for i in ids} == {ids[0][2]} and ids[0][1] != ids[0][2]
    assert seen[-1] == {1: 10, 2: 12}
    assert tracker.issued == 2


def test_a_longer_dropout_starts_a_new_track():
    shape = (60, 60)
    tracker = Tracker(ObjectSettings(classes=("a",), min_area=4, max_missed=1))
    square = find_regions(_square(shape, 20, 20), [1], 4)
    first = tracker.update(square, shape, 0, 0)[0].track_id
    for frame in (1, 2):
        assert tracker.update([], shape, frame, frame) == []
    again = tracker.update(square, shape, 3, 3)[0]
    assert again.track_id != first and again.frames_seen == 1 and again.first_t_ns == 3


def test_dive_tracks_are_stable(dive_labels):
    """On the synthetic dive (smooth camera motion) most objects keep one id for many frames."""
    ids = object_class_ids(OBJECT_CLASSES, CLASS_NAMES)
    tracker = Tracker(ObjectSettings(classes=OBJECT_CLASSES, min_area=MIN_AREA))
    detections = 0
    for frame, labels in enumerate(dive_labels):
        detections += len(tracker.update(find_regions(labels, ids, MIN_AREA), labels.shape,
                                         frame, frame))
    # Each track, on average, covers several frames: ids are not reissued frame after frame.
    assert detections / tracker.issued >= 3, (detections, tracker.issued)


@pytest.mark.parametrize("change, expect", [
    ({"classes": ("a", "a")}, "named twice"),
    ({"min_area": 0}, "min_area"),
    ({"max_missed": -1}, "max_missed"),
    ({"match_iou": 0.0}, "match_iou"),
    ({"match_distance": 2.0}, "match_distance"),
])
def test_settings_refuse_bad_values(change, expect):
    with pytest.raises(ValueError, match=expect):
        ObjectSettings(**change)


def test_unknown_object_class_is_named():
    with pytest.raises(ValueError, match=r"litter.*water, sand"):
        object_class_ids(("fish", "litter"), ("water", "sand", "fish"))
