"""The node's building blocks on their own (real message classes, no DDS participant)."""

from __future__ import annotations

import array
import ast
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from uwstego.contract import NODE_NAME
from uwstego.image_size import Size
from uwstego_ros.conversions import array_to_image, coverage_to_msg, scale_camera_info
from uwstego_ros.mailbox import Mailbox
from uwstego_ros.params import DEFAULTS, SPECS, check_value, pixel_cap
from uwstego_ros.stats import RateMeter, StreamStats


def test_mailbox_keeps_the_newest_and_counts_the_replaced():
    box = Mailbox()
    for i in range(5):
        box.put(i)
    assert box.take(timeout=0).msg == 4
    assert box.dropped == 4
    assert box.take(timeout=0.01) is None
    box.put("late")
    assert box.take(timeout=0).msg == "late" and box.dropped == 4


def test_mailbox_close_wakes_a_waiting_reader():
    box = Mailbox()
    got = []
    reader = threading.Thread(target=lambda: got.append(box.take(timeout=10)))
    reader.start()
    box.close()
    reader.join(2)
    assert not reader.is_alive() and got == [None]


def test_images_are_built_with_the_right_encoding_step_and_bytes():
    header = Header(frame_id="cam")
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = array_to_image(labels, header)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("mono8", 4, 3, 4)
    assert isinstance(msg.data, array.array) and bytes(msg.data) == labels.tobytes()
    rgb = array_to_image(np.zeros((3, 4, 3), np.uint8), header)
    assert (rgb.encoding, rgb.step) == ("rgb8", 12)
    conf = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    fmsg = array_to_image(conf, header)
    assert (fmsg.encoding, fmsg.step) == ("32FC1", 16)
    assert np.array_equal(np.frombuffer(bytes(fmsg.data), np.float32).reshape(3, 4), conf)
    assert msg.header.frame_id == "cam"
    with pytest.raises(ValueError, match="no image encoding"):
        array_to_image(np.zeros((3, 4), np.int16), header)


def test_camera_info_is_scaled_to_the_label_size():
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.0]
    info.roi.x_offset, info.roi.width = 64, 320
    out = scale_camera_info(info, 320, 120, Header(frame_id="cam"))
    assert (out.width, out.height, out.header.frame_id) == (320, 120, "cam")
    assert list(out.k) == [250.0, 0.0, 160.0, 0.0, 127.5, 60.0, 0.0, 0.0, 1.0]
    assert list(out.p)[:4] == [250.0, 0.0, 160.0, -12.5] and list(out.p)[8:] == list(info.p)[8:]
    assert list(out.d) == list(info.d)
    assert (out.roi.x_offset, out.roi.width) == (32, 160)


def test_coverage_message_lists_class_names():
    msg = coverage_to_msg(np.array([0.25, 0.75]), ["sand", "rock"])
    assert msg.layout.dim[0].label == "sand,rock" and msg.layout.dim[0].size == 2
    assert list(msg.data) == [0.25, 0.75]


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("backend", "tflite", "not one of"),
    ("transport", "theora", "not one of"),
    ("qos_depth", 0, "outside"),
    ("overlay_alpha", -0.1, "outside"),
    ("max_rate", "fast", "expected a float"),
    ("publish_overlay", 1, "expected a bool"),
    ("bundle", "", "required"),
    ("colour", 1, "unknown parameter"),
])
def test_invalid_parameter_values_are_refused_with_a_reason(name, value, reason):
    assert reason in check_value(name, value)
    with pytest.raises(ValueError, match=name):
        DEFAULTS.with_values({name: value})


def test_every_setting_has_a_parameter_and_ints_become_floats():
    assert set(SPECS) == set(DEFAULTS.__dataclass_fields__)
    settings = DEFAULTS.with_values({"bundle": "/b", "max_rate": 5})
    assert settings.max_rate == 5.0 and isinstance(settings.max_rate, float)


@pytest.mark.parametrize(("max_pixels", "camera", "cap"), [
    (0, Size(640, 480), 3840 * 2160),  # a 1080p or 4K camera on a 640x480 bundle: accepted
    (0, Size(3840, 2160), 4 * 3840 * 2160),  # a bundle made for a 4K camera: 4 x its size
    (1000, Size(640, 480), 1000),
])
def test_the_pixel_cap_accepts_every_camera_up_to_4k_by_default(max_pixels, camera, cap):
    assert pixel_cap(max_pixels, camera) == cap
    assert "3840x2160" in SPECS["max_pixels"].description


def test_stats_account_for_rates_and_percentiles():
    stats = StreamStats()
    for latency in range(1, 101):
        stats.received()
        stats.published(float(latency), 1.0, 2.0)
    stats.bad("truncated", "truncated rgb8 image")
    assert stats.size_changed("64x48") is False and stats.size_changed("80x60") is True
    snap = stats.snapshot(dropped=3)
    assert (snap.frames_in, snap.frames_out, snap.bad_frames, snap.dropped) == (100, 100, 1, 3)
    assert snap.latency_ms[0] == pytest.approx(50.5) and snap.latency_ms[1] == pytest.approx(95.05)
    assert snap.bad_since_last == 1 and stats.snapshot(0).bad_since_last == 0
    assert snap.out_since_last == 100 and snap.last_bad_kind == "truncated"
    assert snap.refused_streak == 1
    assert snap.resolution_changes == 1 and snap.last_bad == "truncated rgb8 image"
    assert snap.bad_by_kind == {"truncated": 1}


def test_rate_meter_measures_events_per_second():
    meter = RateMeter(window=5.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)
    assert meter.rate(101.0) == pytest.approx(10.0)
    assert meter.rate(200.0) == 0.0


PACKAGE = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "uwstego_ros"


def test_the_vehicle_parameters_file_sets_every_parameter_validly():
    doc = yaml.safe_load((PACKAGE / "config" / "segmentation.yaml").read_text())
    values = doc[NODE_NAME]["ros__parameters"]
    assert set(values) == set(SPECS)
    DEFAULTS.with_values(values)  # raises naming the first invalid value


def _launch_arguments() -> dict[str, dict[str, ast.expr]]:
    tree = ast.parse((PACKAGE / "launch" / "segmentation.launch.py").read_text())
    found = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            found[call.args[0].value] = {k.arg: k.value for k in call.keywords}
    return found


def test_every_launch_argument_is_described_and_closed_sets_have_choices():
    arguments = _launch_arguments()
    assert {"camera", "bundle", "transport", "backend", "qos", "output_qos", "autostart",
            "large_data", "respawn"} <= set(arguments)
    for name, keywords in arguments.items():
        assert "description" in keywords and "default_value" in keywords, name
        closed = bool(name in SPECS and SPECS[name].choices) or isinstance(
            getattr(DEFAULTS, name, None), bool) or name in ("large_data", "respawn")
        assert not closed or "choices" in keywords, f"{name} needs choices"
