"""The segmentation node, run for real in a subprocess and driven over DDS from this process."""

from __future__ import annotations

import array
import importlib.util
import shutil

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32MultiArray

from uwstego.rosimage import decode_compressed, decode_image, encode_jpeg
from uwstego.segmenter import Segmenter
from uwstego.visualize import coverage, overlay, palette

from ros_harness import CAMERA, NODE_NAME, Probe

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
START_TIMEOUT = 30.0


def _frame(seed: int, size: tuple[int, int] = CAMERA) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    img = cv2.resize(base, size, interpolation=cv2.INTER_LINEAR)
    img[..., 0] //= 3  # an underwater-like red deficit
    return img


def _stamp(msg, i: int, frame_id: str) -> None:
    msg.header.stamp.sec = 1000 + i
    msg.header.stamp.nanosec = 1000 * i
    msg.header.frame_id = frame_id


def raw_msg(pixels: np.ndarray, encoding: str, i: int = 0, step: int | None = None) -> Image:
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1)
    step = step or row.shape[1]
    padded = np.zeros((h, step), np.uint8)
    padded[:, :row.shape[1]] = row
    msg = Image(height=h, width=w, encoding=encoding, step=step)
    msg.data = array.array("B", padded.tobytes())
    _stamp(msg, i, f"cam_{i}")
    return msg


def jpeg_msg(rgb: np.ndarray, i: int) -> CompressedImage:
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", encode_jpeg(rgb, quality=90).tobytes())
    _stamp(msg, i, f"cam_{i}")
    return msg


def camera_info(width: int, height: int) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [100.0, 0.0, width / 2, 0.0, 100.0, height / 2, 0.0, 0.0, 1.0]
    info.p = [100.0, 0.0, width / 2, 0.0, 0.0, 100.0, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def image_array(msg: Image) -> np.ndarray:
    dtype = np.float32 if msg.encoding == "32FC1" else np.uint8
    flat = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    channels = 3 if msg.encoding == "rgb8" else 1
    item = np.dtype(dtype).itemsize
    px = flat[:, :msg.width * channels * item].copy().view(dtype)
    return px.reshape(msg.height, msg.width, channels) if channels == 3 else px


def latest_status(diags: list[DiagnosticArray], node_name: str) -> dict[str, str] | None:
    for array_msg in reversed(diags):
        for status in array_msg.status:
            if status.name == f"{node_name}: segmentation":
                return {"level": status.level, "message": status.message,
                        **{kv.key: kv.value for kv in status.values}}
    return None


def settled(status: dict[str, str] | None, frames_in: int | None = None) -> bool:
    """Every received frame is accounted for: published, dropped or bad."""
    if status is None or status["state"] != "running":
        return False
    n_in = int(status["frames_in"])
    done = int(status["frames_out"]) + int(status["dropped_frames"]) + int(status["bad_frames"])
    return n_in == done and (frames_in is None or n_in == frames_in)


def wait_connected(probe: Probe, publishers: list, outputs: list[str]) -> None:
    probe.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                     and all(probe.node.count_publishers(t) > 0 for t in outputs),
                     START_TIMEOUT, "the node to connect")


def reference_run(bundle, msgs) -> list:
    """What the node must compute: the Segmenter run directly over the decoded frames in order,
    with the enhancement state reset when the resolution changes (as the node does)."""
    seg = Segmenter(bundle, backend="onnxruntime")
    out, size = [], None
    for msg in msgs:
        rgb = decode_image(msg)
        if size is not None and rgb.shape != size:
            seg.reset()
        size = rgb.shape
        out.append((rgb, seg.segment(rgb)))
    return out


def test_raw_frames_give_the_segmenters_labels_with_the_input_header(bundle, start_node, probe):
    node = start_node(bundle, transport="raw", qos="reliable", backend="onnxruntime",
                      publish_overlay=True, overlay_alpha=0.4, publish_confidence=True)
    topic = f"/{NODE_NAME}/"
    labels = probe.collect(Image, topic + "labels")
    overlays = probe.collect(Image, topic + "overlay")
    confidences = probe.collect(Image, topic + "confidence")
    coverages = probe.collect(Float32MultiArray, topic + "coverage")
    infos = probe.collect(CameraInfo, topic + "camera_info")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.node.create_publisher(Image, "image", RELIABLE)
    info_pub = probe.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    wait_connected(probe, [pub, info_pub], [topic + "labels", topic + "coverage"])

    big = (96, 72)
    rgb = [_frame(i) for i in range(4)] + [_frame(5, big), _frame(6, big)]
    msgs = [raw_msg(rgb[0], "rgb8", 0), raw_msg(rgb[1], "rgb8", 1),
            raw_msg(rgb[2][..., ::-1], "bgr8", 2),
            raw_msg(cv2.cvtColor(rgb[3], cv2.COLOR_RGB2GRAY), "mono8", 3),
            raw_msg(rgb[4], "rgb8", 4),  # resolution change mid-stream
            raw_msg(rgb[5], "rgb8", 5, step=big[0] * 3 + 16)]  # padded rows
    for i, msg in enumerate(msgs):
        info_pub.publish(camera_info(2 * msg.width, 2 * msg.height))
        pub.publish(msg)
        probe.spin_until(lambda n=i + 1: min(len(labels), len(coverages), len(overlays),
                                             len(confidences)) >= n, 15, f"results of frame {i}")
    assert node.alive()

    lut = palette(bundle.meta.classes)
    names = [c.name for c in bundle.meta.classes]
    for msg, got, ov, conf, cov, (frame, ref) in zip(
            msgs, labels, overlays, confidences, coverages, reference_run(bundle, msgs),
            strict=True):
        assert got.header == msg.header and ov.header == msg.header and conf.header == msg.header
        assert (got.encoding, got.width, got.height, got.step) == ("mono8", msg.width,
                                                                   msg.height, msg.width)
        assert np.array_equal(image_array(got), ref.labels)
        np.testing.assert_allclose(image_array(conf), ref.confidence, rtol=1e-5, atol=1e-6)
        assert ov.encoding == "rgb8"
        assert np.array_equal(image_array(ov), overlay(frame, ref.labels, lut, 0.4))
        assert cov.layout.dim[0].label.split(",") == names
        np.testing.assert_allclose(np.asarray(cov.data), coverage(ref.labels, len(names)),
                                   atol=1e-6)

    assert infos, "no ~/camera_info although camera_info was published"
    for info in infos:
        src = next(m for m in msgs if m.header == info.header)
        assert (info.width, info.height) == (src.width, src.height)
        # the input camera_info was twice the image size: focal lengths and centre halve
        assert info.k[0] == pytest.approx(50.0) and info.k[2] == pytest.approx(src.width / 2)
        assert info.p[5] == pytest.approx(50.0) and info.p[6] == pytest.approx(src.height / 2)

    probe.spin_until(lambda: settled(latest_status(diags, NODE_NAME), len(msgs)), 10,
                     "diagnostics to account for every frame")
    status = latest_status(diags, NODE_NAME)
    # Honest about this stream: the last frames were resized, and 1970 stamps are not live.
    assert status["level"] == DiagnosticStatus.WARN
    assert "resized" in status["message"] and "stamps from the past" in status["message"]
    assert status["backend"] == "onnxruntime" and "CPUExecutionProvider" in status["providers"]
    assert int(status["frames_out"]) == len(msgs)
    assert (status["bad_frames"], status["dropped_frames"]) == ("0", "0")
    assert status["resolution_changes"] == "1" and status["input_size"] == "96x72"
    assert float(status["latency_p95_ms"]) >= float(status["latency_p50_ms"]) > 0
    assert float(status["inference_p50_ms"]) > 0


def _set_parameter(probe: Probe, node_name: str, name: str, value) -> tuple[bool, str]:
    client = probe.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    probe.spin_until(client.service_is_ready, START_TIMEOUT, "the parameter service")
    if isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name,
                                                                              value=pv)]))
    probe.spin_until(future.done, 10, f"setting {name}")
    result = future.result().results[0]
    return result.successful, result.reason


def test_compressed_input_and_runtime_parameters(bundle, start_node, probe):
    start_node(bundle, qos="reliable", backend="onnxruntime")  # transport defaults to compressed
    topic = f"/{NODE_NAME}/"
    labels = probe.collect(Image, topic + "labels")
    overlays = probe.collect(Image, topic + "overlay")
    pub = probe.node.create_publisher(CompressedImage, "image/compressed", RELIABLE)
    wait_connected(probe, [pub], [topic + "labels"])

    msgs = [jpeg_msg(_frame(10 + i), i) for i in range(3)]
    png = CompressedImage(format="png")
    png.data = array.array("B", cv2.imencode(".png", _frame(13)[..., ::-1])[1].tobytes())
    _stamp(png, 3, "cam_png")
    msgs.append(png)
    for i, msg in enumerate(msgs):
        pub.publish(msg)
        probe.spin_until(lambda n=i + 1: len(labels) >= n, 15, f"labels of frame {i}")
    for msg, got, (_, ref) in zip(msgs, labels, reference_run(bundle, msgs), strict=True):
        assert got.header == msg.header
        assert np.array_equal(image_array(got), ref.labels)
    assert not overlays, "overlay is off by default"

    # Descriptors are published, bad values are refused with a reason, good ones take effect.
    describe = probe.node.create_client(DescribeParameters, f"/{NODE_NAME}/describe_parameters")
    probe.spin_until(describe.service_is_ready, START_TIMEOUT, "describe_parameters")
    future = describe.call_async(DescribeParameters.Request(names=["backend", "overlay_alpha"]))
    probe.spin_until(future.done, 10, "parameter descriptors")
    backend_desc, alpha_desc = future.result().descriptors
    # Engine parameters change through the lifecycle (deactivate, set, configure), not live.
    assert not backend_desc.read_only and "onnxruntime" in backend_desc.additional_constraints
    assert not alpha_desc.read_only and alpha_desc.floating_point_range[0].to_value == 1.0

    ok, reason = _set_parameter(probe, NODE_NAME, "overlay_alpha", 1.5)
    assert not ok and reason
    ok, reason = _set_parameter(probe, NODE_NAME, "backend", "tensorrt")
    assert not ok and "while the node is not active" in reason
    ok, reason = _set_parameter(probe, NODE_NAME, "publish_overlay", True)
    assert ok, reason
    pub.publish(jpeg_msg(_frame(20), 20))
    probe.spin_until(lambda: overlays, 15, "an overlay after enabling it")
    assert overlays[0].header.frame_id == "cam_20"


def _bad_raw_messages() -> list[Image]:
    good = _frame(30)
    wrong_step = raw_msg(good, "rgb8")
    wrong_step.step = good.shape[1] * 3 - 3
    truncated = raw_msg(good, "rgb8")
    truncated.data = truncated.data[: len(truncated.data) // 2]
    too_long = raw_msg(good, "rgb8")
    too_long.data.extend(b"\0" * 64)
    empty = Image(height=0, width=0, encoding="rgb8", step=0)
    odd_yuv = raw_msg(np.zeros((8, 7, 2), np.uint8), "yuv422")
    return [raw_msg(good, "32FC1"), raw_msg(good, "weird8"), wrong_step, truncated, too_long,
            empty, odd_yuv]


def _bad_compressed_messages() -> list[CompressedImage]:
    jpeg = encode_jpeg(_frame(31)).tobytes()
    out = []
    for fmt, data in [("jpeg", jpeg[: len(jpeg) // 2]),  # truncated
                      ("jpeg", b"\xff\xd8" + bytes(200) + b"\xff\xd9"),  # corrupt
                      ("jpeg", b""),
                      ("png", b"\x89PNG\r\n\x1a\n" + bytes(50)),
                      ("16UC1; compressedDepth", jpeg)]:
        msg = CompressedImage(format=fmt)
        msg.data = array.array("B", data)
        out.append(msg)
    return out


def test_malformed_floods_are_counted_and_the_node_keeps_serving(bundle, start_node, probe):
    raw_node = start_node(bundle, name="seg_raw", transport="raw")
    jpeg_node = start_node(bundle, name="seg_jpeg", transport="compressed")
    raw_labels = probe.collect(Image, "/seg_raw/labels")
    jpeg_labels = probe.collect(Image, "/seg_jpeg/labels")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    raw_pub = probe.node.create_publisher(Image, "image", qos_profile_sensor_data)
    jpeg_pub = probe.node.create_publisher(CompressedImage, "image/compressed",
                                           qos_profile_sensor_data)
    wait_connected(probe, [raw_pub, jpeg_pub], ["/seg_raw/labels", "/seg_jpeg/labels"])

    good = 0

    def send_good(size: tuple[int, int]) -> bool:
        nonlocal good
        raw_pub.publish(raw_msg(_frame(32, size), "rgb8", good))
        jpeg_pub.publish(jpeg_msg(_frame(33), good))
        good += 1
        probe.spin_for(0.1)
        return bool(raw_labels and jpeg_labels)

    probe.spin_until(lambda: send_good(CAMERA), START_TIMEOUT, "labels before the flood")
    bad_raw, bad_jpeg = _bad_raw_messages(), _bad_compressed_messages()
    for _ in range(15):
        for msg in bad_raw:
            raw_pub.publish(msg)
        for msg in bad_jpeg:
            jpeg_pub.publish(msg)
        probe.spin_for(0.02)

    # ...then good frames again, also at a new resolution: both nodes still serve.
    raw_labels.clear()
    jpeg_labels.clear()
    probe.spin_until(lambda: send_good((80, 60)), 20, "labels after the flood")
    assert (raw_labels[-1].width, raw_labels[-1].height) == (80, 60)
    assert jpeg_labels[-1].header.frame_id.startswith("cam_")

    probe.spin_for(0.5)  # let the last frames drain, then demand that every frame is counted
    for name, node, sent in (("seg_raw", raw_node, bad_raw), ("seg_jpeg", jpeg_node, bad_jpeg)):
        probe.spin_until(lambda n=name: settled(latest_status(diags, n)), 10,
                         f"{name} diagnostics to settle")
        status = latest_status(diags, name)
        assert node.alive(), node.output()
        assert int(status["bad_frames"]) > 0 and status["last_bad_frame"]
        assert int(status["frames_out"]) >= 1
        # best effort may lose some on the way, but nothing is counted twice
        assert int(status["frames_in"]) <= 15 * len(sent) + good
        warns = [s for a in diags for s in a.status
                 # WARN for a share of bad frames; ERROR for a period whose every frame was
                 # refused (the flood alone), which a loaded machine can make of the whole flood.
                 if s.name == f"{name}: segmentation"
                 and s.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR)
                 and ("bad frame" in s.message or "every frame is refused" in s.message)]
        assert warns, f"{name}: no WARN or ERROR diagnostics for bad frames"
        logged = node.output().count("bad frame skipped")
        assert 1 <= logged < int(status["bad_frames"]), "warnings must be throttled"
    assert latest_status(diags, "seg_raw")["resolution_changes"] == "1"


def test_slow_inference_keeps_only_the_newest_frame(bundle, start_node, probe):
    # a deep reliable queue: every frame must reach the node, which then keeps only the newest
    start_node(bundle, transport="raw", qos="reliable", qos_depth=100, max_rate=4.0)
    labels = probe.collect(Image, f"/{NODE_NAME}/labels")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.node.create_publisher(Image, "image", RELIABLE)
    wait_connected(probe, [pub], [f"/{NODE_NAME}/labels"])
    probe.spin_until(lambda: (latest_status(diags, NODE_NAME) or {}).get("state") == "running",
                     START_TIMEOUT, "the worker to start")

    sent = 30
    for i in range(sent):
        pub.publish(raw_msg(_frame(i), "rgb8", i))
        probe.spin_for(0.01)
    probe.spin_until(lambda: settled(latest_status(diags, NODE_NAME), sent), 15,
                     "every frame to be processed or dropped")
    status = latest_status(diags, NODE_NAME)
    out, dropped = int(status["frames_out"]), int(status["dropped_frames"])
    assert out + dropped == sent and dropped > 0 and status["bad_frames"] == "0"
    probe.spin_until(lambda: len(labels) == out, 5, "all published labels")
    stamps = [m.header.stamp.sec for m in labels]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1] == 1000 + sent - 1, "the newest frame must be the one processed last"


@pytest.mark.parametrize("case", ["missing", "damaged", "no_bundle", "bad_backend", "bad_alpha",
                                  "tensorrt_unavailable"])
def test_start_failures_exit_with_one_clear_message(case, bundle, start_node, tmp_path):
    params: dict = {}
    expect = {"missing": "does not exist", "damaged": "checksum mismatch",
              "no_bundle": "is required", "bad_backend": "is not one of",
              "bad_alpha": "overlay_alpha", "tensorrt_unavailable": "tensorrt"}[case]
    target = bundle.path
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "damaged":
        target = tmp_path / "damaged"
        shutil.copytree(bundle.path, target)
        with open(target / "model.onnx", "ab") as f:
            f.write(b"\0")
    elif case == "no_bundle":
        target = None
    elif case == "bad_backend":
        params["backend"] = "tflite"
    elif case == "bad_alpha":
        params["overlay_alpha"] = 2.0
    elif importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    else:
        params["backend"] = "tensorrt"
    node = start_node(target, **params)
    rc = node.wait(START_TIMEOUT)
    text = node.output()
    assert rc == 1, text
    fatal = [line for line in text.splitlines() if "cannot start" in line]
    assert len(fatal) == 1 and expect in fatal[0], text
    assert "Traceback" not in text


def test_reduced_decode_segments_large_jpegs_at_the_reduced_size(bundle, start_node, probe):
    start_node(bundle, qos="reliable", backend="onnxruntime", reduced_decode=True)
    labels = probe.collect(Image, f"/{NODE_NAME}/labels")
    pub = probe.node.create_publisher(CompressedImage, "image/compressed", RELIABLE)
    wait_connected(probe, [pub], [f"/{NODE_NAME}/labels"])
    big = (CAMERA[0] * 4 + 8, CAMERA[1] * 4 + 8)  # 1/4 still covers the camera size
    msg = jpeg_msg(_frame(70, big), 0)
    pub.publish(msg)
    probe.spin_until(lambda: labels, 15, "labels of the large JPEG")
    small = decode_compressed(msg, reduction=4)
    assert small.shape[:2] == (-(-big[1] // 4), -(-big[0] // 4))
    ref = Segmenter(bundle, backend="onnxruntime").segment(small)
    assert (labels[0].width, labels[0].height) == (small.shape[1], small.shape[0])
    assert np.array_equal(image_array(labels[0]), ref.labels)
