"""The node's objects: ~/objects/markers (ImageMarker), the object parameters, diagnostics.

``~/objects`` (vision_msgs/Detection2DArray) cannot be tested here: vision_msgs has no PyPI
wheel. Its absence is checked instead (no such topic, diagnostics say why).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from visualization_msgs.msg import ImageMarker

from uwstego.objects import ObjectSettings, Tracker, find_regions

import test_ros_node as node_tests
from ros_harness import NODE_NAME

pytestmark = pytest.mark.ros
MIN_AREA = 4


def _boxes(marker: ImageMarker) -> list[tuple[int, int, int, int]]:
    """x, y, w, h of every box of a LINE_LIST marker (four sides = eight points each)."""
    pts = np.array([(p.x, p.y) for p in marker.points]).reshape(-1, 8, 2)
    return [(int(b[:, 0].min()), int(b[:, 1].min()), int(np.ptp(b[:, 0])), int(np.ptp(b[:, 1])))
            for b in pts]


def test_markers_tracks_and_diagnostics(bundle, start_node, probe):
    names = [c.name for c in bundle.meta.classes]
    wanted = names[:3]
    start_node(bundle, transport="raw", qos="reliable", backend="onnxruntime",
               object_classes=",".join(wanted), object_min_area=MIN_AREA)
    markers = probe.collect(ImageMarker, f"/{NODE_NAME}/objects/markers")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.node.create_publisher(Image, "image", node_tests.RELIABLE)
    node_tests.wait_connected(probe, [pub], [f"/{NODE_NAME}/objects/markers"])
    # The same scene three times: every object must keep its track id.
    msgs = [node_tests.raw_msg(node_tests._frame(7), "rgb8", i) for i in range(3)]
    for i, msg in enumerate(msgs):
        pub.publish(msg)
        probe.spin_until(lambda n=i + 1: len(markers) >= n, 15, f"markers of frame {i}")

    settings = ObjectSettings(classes=tuple(wanted), min_area=MIN_AREA)
    tracker = Tracker(settings)
    expected = []
    for i, (_, seg) in enumerate(node_tests.reference_run(bundle, msgs)):
        regions = find_regions(seg.labels, range(3), MIN_AREA, seg.confidence)
        expected.append(tracker.update(regions, seg.labels.shape, i + 1, i))
    assert expected[0], "the reference frame has no object of the first three classes"
    for msg, marker, dets in zip(msgs, markers, expected, strict=True):
        assert marker.header == msg.header
        assert marker.type == ImageMarker.LINE_LIST and marker.ns and marker.id == 0
        assert _boxes(marker) == [d.region.bbox for d in dets]
        colours = {(round(c.r * 255), round(c.g * 255), round(c.b * 255))
                   for c in marker.outline_colors}
        assert colours == {tuple(bundle.meta.classes[d.region.class_id].color) for d in dets}
    assert [d.track_id for d in expected[-1]] == [d.track_id for d in expected[0]]

    def current():
        return node_tests.latest_status(diags, NODE_NAME)

    probe.spin_until(lambda: node_tests.settled(current(), len(msgs)), 10,
                     "diagnostics to account for every frame")
    status = current()
    assert int(status["objects_in_frame"]) == len(expected[-1])
    # Stable ids on the node too: three frames of one scene issue one id per object.
    assert int(status["object_tracks_total"]) == len(expected[0])
    assert int(status["object_tracks_live"]) == len(expected[0])
    has_vision = importlib.util.find_spec("vision_msgs") is not None
    assert ("not installed" in status["objects_detection2d"]) != has_vision
    if not has_vision:
        assert probe.node.count_publishers(f"/{NODE_NAME}/objects") == 0


def test_no_object_classes_no_object_topics(bundle, start_node, probe):
    start_node(bundle, transport="raw", qos="reliable", backend="onnxruntime")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    running = node_tests.START_TIMEOUT
    probe.spin_until(lambda: (node_tests.latest_status(diags, NODE_NAME) or {}).get("state")
                     == "running", running, "the node to run")
    assert "objects_in_frame" not in node_tests.latest_status(diags, NODE_NAME)
    assert probe.node.count_publishers(f"/{NODE_NAME}/objects/markers") == 0


@pytest.mark.parametrize("params, expect", [
    ({"object_classes": "no_such_class"}, "no_such_class"),
    ({"object_classes": "a,a"}, "named twice"),
    ({"object_min_area": 0}, "object_min_area"),
])
def test_bad_object_parameters_stop_with_one_line(bundle, start_node, params, expect):
    node = start_node(bundle, backend="onnxruntime", **params)
    rc, text = node.wait(node_tests.START_TIMEOUT), node.output()
    assert rc == 1 and "Traceback" not in text, text
    (fatal,) = [line for line in text.splitlines() if "cannot start" in line]
    assert expect in fatal, text
