"""/diagnostics never look healthy when the node is not: five nodes, each fed one condition over
real DDS, plus the level rules on their own."""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from uwstego.image_size import Size
from uwstego_ros.diagnostics import (
    RANDOM_WEIGHTS,
    Expectations,
    findings,
    trained_on_random_weights,
)
from uwstego_ros.stats import Snapshot

from ros_harness import CAMERA
from test_ros_node import _frame, latest_status, raw_msg

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
EXPECT = Expectations(topic="/cam/image", transport="raw", camera=Size(*CAMERA), stale_after=2.0,
                      expected_rate=0.0, warn_drop_ratio=0.5, warn_bad_ratio=0.0)


def snapshot(**changes) -> Snapshot:
    fields = dict(frames_in=50, frames_out=50, dropped=0, bad_frames=0, resolution_changes=0,
                  input_hz=10.0, output_hz=10.0, camera_info_hz=0.0, camera_info_count=0,
                  latency_ms=[5.0, 8.0], inference_ms=[3.0, 4.0], stamp_delay_ms=[6.0, 9.0],
                  last_bad="", input_size=f"{CAMERA[0]}x{CAMERA[1]}", bad_by_kind={},
                  since_frame_s=0.1, in_since_last=10, dropped_since_last=0, bad_since_last=0,
                  out_since_last=10)
    return Snapshot(**{**fields, **changes})


@pytest.mark.parametrize(("changes", "expect", "level", "needle"), [
    ({}, {}, None, None),
    ({"since_frame_s": 2.5}, {}, DiagnosticStatus.STALE, "no frame on /cam/image (raw)"),
    ({"input_hz": 4.0}, {"expected_rate": 10.0}, DiagnosticStatus.WARN, "below the expected"),
    ({"input_hz": 9.5}, {"expected_rate": 10.0}, None, None),  # within the tolerance
    ({"camera_info_hz": 30.0, "camera_info_count": 30, "input_hz": 8.0}, {},
     DiagnosticStatus.WARN, "lost before the node"),
    ({"input_size": "128x96"}, {}, DiagnosticStatus.WARN, "resized to the bundle's camera size"),
    ({"input_size": "128x48"}, {}, DiagnosticStatus.ERROR, "different aspect ratio"),
    ({"stamp_delay_ms": [96_151_168_637.0] * 2}, {}, DiagnosticStatus.WARN,
     "stamps from the past: replaying? use --clock/use_sim_time or --restamp"),
    ({"dropped_since_last": 7}, {}, DiagnosticStatus.WARN, "70% of frames dropped"),
    ({"dropped_since_last": 4}, {}, None, None),
    ({"bad_since_last": 1, "last_bad": "truncated JPEG"}, {}, DiagnosticStatus.WARN,
     "1 bad frame(s): truncated JPEG"),
    ({"bad_since_last": 1}, {"warn_bad_ratio": 0.2}, None, None),
    # every frame of the period refused: nothing is segmented (the WARN for bad frames too)
    ({"bad_since_last": 10, "out_since_last": 0, "refused_streak": 12, "last_bad": "4000x3000 "
      "declared, more than max_pixels 8294400", "last_bad_kind": "too_large"},
     {"max_pixels": 8294400}, [DiagnosticStatus.ERROR, DiagnosticStatus.WARN],
     "set the max_pixels parameter"),
    ({"bad_since_last": 10, "out_since_last": 0, "refused_streak": 10, "last_bad":
      "truncated JPEG", "last_bad_kind": "truncated"}, {},
     [DiagnosticStatus.ERROR, DiagnosticStatus.WARN],
     "every frame is refused (10 in a row): truncated JPEG"),
    # a slow model that finished no frame this period after two bad ones: not yet an error
    ({"bad_since_last": 2, "out_since_last": 0, "refused_streak": 2}, {},
     DiagnosticStatus.WARN, "2 bad frame(s)"),
    ({}, {"random_weights": True}, DiagnosticStatus.WARN,
     "random weights: segmentation means nothing"),
])
def test_levels(changes, expect, level, needle):
    found = findings(snapshot(**changes), "running", Expectations(**{**EXPECT.__dict__,
                                                                      **expect}))
    if level is None:
        assert found == []
    else:
        levels = level if isinstance(level, list) else [level]
        assert [lvl for lvl, _ in found] == levels and needle in found[0][1]


def test_states_other_than_running_are_never_ok():
    assert findings(snapshot(), "error", EXPECT, "inference failed: Fail: x") == [
        (DiagnosticStatus.ERROR, "inference failed: Fail: x")]
    assert findings(snapshot(), "inactive", EXPECT)[0][0] == DiagnosticStatus.WARN
    random = Expectations(**{**EXPECT.__dict__, "random_weights": True})
    assert [m for _, m in findings(snapshot(), "inactive", random)][1] == RANDOM_WEIGHTS


@pytest.mark.parametrize(("provenance", "random"), [
    ({"training": {"random_weights": True, "steps": 20}}, True),
    ({"training": {"random_weights": False}}, False),
    ({"training": {"source": "official STEGO checkpoint"}}, False),
    ({"random_weights": True}, False),  # only the training pipeline's own record counts
    ({"training": "random_weights"}, False),
    ({}, False),
    # The trust facts export writes (edge/trust.py) come first.
    ({"trust": {"weights": "random", "backbone": "b", "data": "d", "steps": 2, "clusters": 3},
      "training": {"random_weights": False}}, True),
    ({"trust": {"weights": "official", "backbone": "b", "data": "d", "steps": 2, "clusters": 3}},
     False),
])
def test_random_weights_are_read_from_the_training_provenance(provenance, random):
    assert trained_on_random_weights(provenance) is random


@pytest.mark.ros
def test_each_condition_shows_in_diagnostics(bundle, start_node, probe):
    cases = {  # name -> (node parameters, frame size, seconds between frames, stamp)
        # sent at 10 Hz; expected 2 Hz: a loaded CI machine slows this loop, not the node
        "ok": ({"expected_rate": 2.0}, CAMERA, 0.1, "now"),
        "stale": ({}, CAMERA, None, "now"),
        "slow": ({"expected_rate": 10.0}, CAMERA, 0.5, "now"),
        "resized": ({}, (80, 60), 0.1, "now"),
        "stretched": ({}, (96, 48), 0.1, "now"),
        "old_stamps": ({}, CAMERA, 0.1, "1970"),
    }
    nodes = {name: start_node(bundle, name=f"seg_{name}", namespace=f"/{name}", transport="raw",
                              qos="reliable", backend="onnxruntime", stale_after=1.5, **params)
             for name, (params, *_) in cases.items()}
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pubs = {name: probe.node.create_publisher(Image, f"/{name}/image", RELIABLE)
            for name in cases}
    probe.spin_until(lambda: all(p.get_subscription_count() for p in pubs.values())
                     and all((latest_status(diags, f"seg_{n}") or {}).get("state") == "running"
                             for n in cases), 60, "every node to run")

    last = dict.fromkeys(cases, 0.0)
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        for name, (_, size, period, stamp) in cases.items():
            if period is None or now - last[name] < period:
                continue
            last[name] = now
            msg = raw_msg(_frame(7, size), "rgb8")
            if stamp == "now":
                msg.header.stamp = probe.node.get_clock().now().to_msg()
            pubs[name].publish(msg)
        probe.spin_for(0.02)
    probe.spin_for(0.5)

    expected = {
        "ok": (DiagnosticStatus.OK, "segmenting"),
        "stale": (DiagnosticStatus.STALE, "no frame on /stale/image (raw)"),
        "slow": (DiagnosticStatus.WARN, "below the expected 10.0 Hz"),
        "resized": (DiagnosticStatus.WARN, "frames 80x60 are resized to the bundle's camera "
                                           f"size {CAMERA[0]}x{CAMERA[1]}"),
        "stretched": (DiagnosticStatus.ERROR, "different aspect ratio"),
        "old_stamps": (DiagnosticStatus.WARN, "stamps from the past"),
    }
    for name, (level, needle) in expected.items():
        status = latest_status(diags, f"seg_{name}")
        assert nodes[name].alive(), nodes[name].output()
        assert (status["level"], needle in status["message"]) == (level, True), (name, status)
        if name == "stale":
            assert "latency_p50_ms" not in status and status["frames_in"] == "0"
    # Resizing is said once in the log, and always in diagnostics.
    assert nodes["resized"].output().count("are resized") == 1
