"""What the node tells its operator about input it cannot use and a model it should not trust,
over real DDS: a 1080p camera on a small bundle is segmented by default, a camera whose every
frame is refused is an ERROR naming max_pixels, and a model trained on random backbone weights
is a WARN in /diagnostics and one line in the log."""

from __future__ import annotations

import array
import dataclasses

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from tests.support.hostile import jpeg_declaring
from uwstego.bundle import write_bundle
from uwstego.rosimage import encode_jpeg
from uwstego.trust import RANDOM, TRUST_KEY

from ros_harness import NODE_NAME
from test_ros_node import _frame, jpeg_msg, latest_status, raw_msg, wait_connected

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TIMEOUT = 30.0
FULL_HD = (1920, 1080)


def test_a_1080p_camera_is_segmented_and_one_refusing_every_frame_is_an_error(
        bundle, start_node, probe):
    node = start_node(bundle, qos="reliable", backend="onnxruntime")  # max_pixels default (0)
    topic = f"/{NODE_NAME}/"
    labels = probe.collect(Image, topic + "labels")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.node.create_publisher(CompressedImage, "image/compressed", RELIABLE)
    wait_connected(probe, [pub], [topic + "labels"])

    pub.publish(jpeg_msg(_frame(80, FULL_HD), 0))
    probe.spin_until(lambda: labels, TIMEOUT, "labels of the 1080p frame")
    assert (labels[0].width, labels[0].height) == FULL_HD, node.output()

    # A camera above 4K UHD (8192x4320 declared): every frame refused, so nothing is segmented.
    bomb = CompressedImage(format="jpeg")
    bomb.data = array.array("B", jpeg_declaring(encode_jpeg(_frame(81)).tobytes(), 8192, 4320))

    def refused() -> bool:
        pub.publish(bomb)
        status = latest_status(diags, NODE_NAME) or {}
        # (the 1080p frame is an ERROR too while it is the last size seen: 16:9 on a 4:3 bundle)
        return "every frame is refused" in status.get("message", "")

    probe.spin_until(refused, TIMEOUT, "an ERROR for a camera whose frames are all refused")
    status = latest_status(diags, NODE_NAME)
    assert status["level"] == DiagnosticStatus.ERROR, status
    assert "max_pixels" in status["message"] and "8192x4320" in status["message"], status
    assert status["max_pixels"] == str(3840 * 2160)
    assert node.alive(), node.output()


def test_a_model_trained_on_random_weights_warns(bundle, start_node, probe, tmp_path):
    provenance = dict(bundle.meta.provenance)
    provenance["training"] = {**provenance.get("training", {}), "random_weights": True}
    if TRUST_KEY in provenance:  # the trust facts export writes are what the node reads first
        provenance[TRUST_KEY] = {**provenance[TRUST_KEY], "weights": RANDOM}
    random_bundle = write_bundle(tmp_path / "random", dataclasses.replace(
        bundle.meta, provenance=provenance), {"model.onnx": bundle.model_path})
    trusted = start_node(bundle, name="seg_trusted", transport="raw", backend="onnxruntime")
    node = start_node(random_bundle, name="seg_random", transport="raw", backend="onnxruntime")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.node.create_publisher(Image, "image", RELIABLE)
    wait_connected(probe, [pub], ["/seg_random/labels", "/seg_trusted/labels"])

    def running(name: str) -> bool:
        status = latest_status(diags, name) or {}
        return status.get("state") == "running" and status.get("frames_out") not in (None, "0")

    def both_running() -> bool:
        pub.publish(raw_msg(_frame(82), "rgb8"))
        probe.spin_for(0.1)
        return running("seg_random") and running("seg_trusted")

    probe.spin_until(both_running, TIMEOUT, "both nodes to segment")
    status = latest_status(diags, "seg_random")
    assert status["level"] == DiagnosticStatus.WARN, status
    assert "random weights: segmentation means nothing" in status["message"]
    assert status["random_weights"] == "True"
    assert latest_status(diags, "seg_trusted")["random_weights"] == "False"
    assert "random weights" not in latest_status(diags, "seg_trusted")["message"]
    assert node.output().count("random weights: segmentation means nothing") == 1, node.output()
    assert "random weights" not in trusted.output()
