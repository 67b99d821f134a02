"""Hostile input over real DDS: nothing on the wire stops the node, every bad frame is counted by
kind, memory stays bounded; a backend that cannot run ends the process with a non-zero code."""

from __future__ import annotations

import array
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from tests.support.hostile import jpeg_declaring, png_declaring
from uwstego.bundle import load_bundle, write_bundle
from uwstego.contract import GRAPH_CONFIDENCE, GRAPH_ENHANCE, GRAPH_IMAGE, GRAPH_LABELS

from ros_harness import CAMERA, NODE_NAME
from test_ros_node import (
    _frame,
    image_array,
    jpeg_msg,
    latest_status,
    raw_msg,
    reference_run,
    settled,
    wait_connected,
)

pytestmark = pytest.mark.ros

RELIABLE_DEEP = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Peak RSS may grow by at most this much over the flood. Without the header cap one 4 KB JPEG
# declaring 20000x20000 costs 1.2 GB (one BGR buffer) on its own.
RSS_GROWTH_BOUND_MB = 64


def _compressed(fmt: str, data: bytes, frame_id: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    msg.header.frame_id = frame_id
    return msg


def hostile_compressed() -> dict[str, tuple[str, CompressedImage]]:
    """name -> (expected kind, message)."""
    jpeg = cv2.imencode(".jpg", _frame(40)[..., ::-1])[1].tobytes()
    png = cv2.imencode(".png", _frame(41)[..., ::-1])[1].tobytes()
    cases = {
        "jpeg_bomb_20000": ("too_large", "jpeg", jpeg_declaring(jpeg, 20000, 20000)),
        "jpeg_bomb_over_opencv_limit": ("too_large", "jpeg", jpeg_declaring(jpeg, 40000, 40000)),
        "png_bomb_50000": ("too_large", "png", png_declaring(png, 50000, 50000)),
        "png_lying_size": ("corrupt", "png", png_declaring(png, 2 * CAMERA[0], CAMERA[1])),
        "jpeg_truncated": ("truncated", "jpeg", jpeg[: len(jpeg) // 2]),
        "jpeg_no_frame_header": ("corrupt", "jpeg", b"\xff\xd8" + bytes(200) + b"\xff\xd9"),
        "png_zeroed_data": ("corrupt", "png", png[:41] + bytes(len(png) - 41)),
        "empty": ("empty", "jpeg", b""),
        "gif": ("unsupported_format", "gif", b"GIF89a" + bytes(100)),
        "compressed_depth": ("unsupported_format", "16UC1; compressedDepth", png),
    }
    return {name: (kind, _compressed(fmt, data, name))
            for name, (kind, fmt, data) in cases.items()}


def hostile_raw() -> dict[str, tuple[str, Image]]:
    good = _frame(42)
    cases: dict[str, tuple[str, Image]] = {}

    def add(name: str, kind: str, msg: Image) -> None:
        msg.header.frame_id = name
        cases[name] = (kind, msg)

    add("float_encoding", "unsupported_encoding", raw_msg(good, "32FC1"))
    add("unknown_encoding", "unsupported_encoding", raw_msg(good, "weird8"))
    short_step = raw_msg(good, "rgb8")
    short_step.step = good.shape[1] * 3 - 3
    add("short_step", "bad_layout", short_step)
    truncated = raw_msg(good, "rgb8")
    truncated.data = truncated.data[: len(truncated.data) // 2]
    add("truncated", "truncated", truncated)
    too_long = raw_msg(good, "rgb8")
    too_long.data.extend(b"\0" * 64)
    add("too_long", "bad_layout", too_long)
    add("empty", "empty", Image(height=0, width=0, encoding="rgb8", step=0))
    add("odd_width_yuv", "bad_layout", raw_msg(np.zeros((8, 7, 2), np.uint8), "yuv422"))
    bomb = Image(height=100000, width=100000, encoding="mono8", step=100000)
    bomb.data = array.array("B", bytes(16))
    add("raw_bomb", "too_large", bomb)
    return cases


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.parametrize("transport", ["compressed", "raw"])
def test_hostile_flood_is_counted_by_kind_and_good_frames_still_segment(
        transport, bundle, start_node, probe):
    node = start_node(bundle, transport=transport, qos="reliable", qos_depth=100,
                      backend="onnxruntime")
    labels = probe.collect(Image, f"/{NODE_NAME}/labels")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    msg_type, topic = ((CompressedImage, "image/compressed") if transport == "compressed"
                       else (Image, "image"))
    pub = probe.node.create_publisher(msg_type, topic, RELIABLE_DEEP)
    wait_connected(probe, [pub], [f"/{NODE_NAME}/labels"])

    def good(i: int):
        msg = jpeg_msg(_frame(100 + i), i) if transport == "compressed" else \
            raw_msg(_frame(100 + i), "rgb8", i)
        msg.header.frame_id = f"good_{i}"
        return msg

    # Warm up (first inference allocates the session's arenas), then take the baseline.
    pub.publish(good(0))
    probe.spin_until(lambda: labels, 30, "the first labels")
    baseline = _peak_rss_mb(node.proc.pid)

    hostile = hostile_compressed() if transport == "compressed" else hostile_raw()
    rounds = 3
    sent_good = [good(0)]
    for r in range(rounds):
        for _, msg in hostile.values():
            pub.publish(msg)
            probe.spin_for(0.03)  # rejecting takes well under a millisecond: keep it countable
        msg = good(r + 1)
        sent_good.append(msg)
        pub.publish(msg)
        probe.spin_until(lambda n=r + 2: len(labels) >= n, 15, f"labels after round {r}")
    total = len(sent_good) + rounds * len(hostile)
    probe.spin_until(lambda: settled(latest_status(diags, NODE_NAME), total), 15,
                     "diagnostics to account for every frame")
    assert node.alive(), node.output()
    status = latest_status(diags, NODE_NAME)

    # Every good frame was segmented as the Segmenter does it (the reliable deep queue and the
    # waits above keep the newest-frame policy from dropping any).
    by_id = {m.header.frame_id: m for m in labels}
    assert sorted(by_id) == sorted(m.header.frame_id for m in sent_good)
    for msg, (_, ref) in zip(sent_good, reference_run(bundle, sent_good), strict=True):
        assert np.array_equal(image_array(by_id[msg.header.frame_id]), ref.labels)

    dropped = int(status["dropped_frames"])
    counted = json.loads(status["bad_frames_by_kind"])
    expected: dict[str, int] = {}
    for kind, _ in hostile.values():
        expected[kind] = expected.get(kind, 0) + rounds
    assert sum(counted.values()) == int(status["bad_frames"])
    assert set(counted) <= set(expected)
    for kind, n in expected.items():
        assert n - dropped <= counted.get(kind, 0) <= n, (kind, counted, dropped)
    assert int(status["frames_out"]) == len(sent_good)

    peak = _peak_rss_mb(node.proc.pid)
    print(f"{transport}: bad by kind {counted}, dropped {dropped}; peak RSS {baseline:.0f} -> "
          f"{peak:.0f} MB")
    assert peak - baseline < RSS_GROWTH_BOUND_MB
    assert node.output().count("bad frame skipped") < int(status["bad_frames"])


def failing_bundle(source, out: Path) -> Path:
    """A bundle whose graph loads but cannot run on real frames: it gathers from a one-element
    table at the frame's brightest value, which ONNX Runtime refuses at run time."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w, h = source.meta.camera.width, source.meta.camera.height
    nodes = [
        helper.make_node("Cast", [GRAPH_IMAGE], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "idx"], ["g"]),
        helper.make_node("ReduceMax", ["x", "axis3"], ["plane"], keepdims=0),
        helper.make_node("Mul", ["plane", "zero"], ["z"]),
        helper.make_node("Add", ["z", "g"], [GRAPH_CONFIDENCE]),
        helper.make_node("Cast", [GRAPH_CONFIDENCE], [GRAPH_LABELS], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes, "fails_at_run_time",
        [helper.make_tensor_value_info(GRAPH_IMAGE, TensorProto.UINT8, [1, h, w, 3]),
         helper.make_tensor_value_info(GRAPH_ENHANCE, TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info(GRAPH_LABELS, TensorProto.UINT8, [1, h, w]),
         helper.make_tensor_value_info(GRAPH_CONFIDENCE, TensorProto.FLOAT, [1, h, w])],
        [helper.make_tensor("table", TensorProto.FLOAT, [1], [0.0]),
         helper.make_tensor("axis3", TensorProto.INT64, [1], [3]),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    write_bundle(out, source.meta, {"model.onnx": model.SerializeToString()})
    return out


def test_a_backend_that_cannot_run_ends_the_node_with_a_non_zero_code(bundle, start_node,
                                                                     probe, tmp_path):
    broken = load_bundle(failing_bundle(bundle, tmp_path / "broken"))
    node = start_node(broken, transport="raw", qos="reliable", backend="onnxruntime")
    pub = probe.node.create_publisher(Image, "image", RELIABLE_DEEP)
    probe.spin_until(lambda: pub.get_subscription_count() > 0, 30, "the node to subscribe")
    frame = _frame(50)
    assert frame.max() > 0  # the gather index is out of range for any frame that is not black
    deadline = time.monotonic() + 30
    while node.alive():
        assert time.monotonic() < deadline, "the node kept running on a failing backend"
        pub.publish(raw_msg(frame, "rgb8"))
        probe.spin_for(0.2)
    rc = node.wait(10)
    text = node.output()
    assert rc == 2, text  # EXIT_BACKEND_FAILED: not a start-up error (1), not a clean stop (0)
    fatal = [line for line in text.splitlines() if "inference failed" in line]
    assert len(fatal) == 1 and "Traceback" not in text, text
