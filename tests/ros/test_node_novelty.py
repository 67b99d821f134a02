"""The node's novelty outputs: ~/novelty, the unknown fraction in ~/coverage, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray

from tests.support.bundles import make_tiny_bundle
from uwstego.bundle import load_bundle
from uwstego.coverage import UNKNOWN_NAME
from uwstego.novelty import novelty_mono8
from uwstego.visualize import coverage

from ros_harness import CAMERA, NODE_NAME
from test_ros_node import (
    RELIABLE,
    _frame,
    image_array,
    latest_status,
    raw_msg,
    reference_run,
    settled,
    wait_connected,
)

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def novelty_bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("novelty") / "bundle",
                                        camera=CAMERA, novelty=True))


def test_novelty_topic_coverage_and_diagnostics(novelty_bundle, start_node, probe):
    # warn_novel_ratio 0: any novel pixel warns, so the finding is certain on random weights.
    start_node(novelty_bundle, transport="raw", qos="reliable", backend="onnxruntime",
               publish_novelty=True, warn_novel_ratio=0.0)
    topic = f"/{NODE_NAME}/"
    novelty = probe.collect(Image, topic + "novelty")
    coverages = probe.collect(Float32MultiArray, topic + "coverage")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    pub = probe.node.create_publisher(Image, "image", RELIABLE)
    wait_connected(probe, [pub], [topic + "novelty", topic + "coverage"])
    msgs = [raw_msg(_frame(30 + i), "rgb8", i) for i in range(3)]
    for i, msg in enumerate(msgs):
        pub.publish(msg)
        probe.spin_until(lambda n=i + 1: min(len(novelty), len(coverages)) >= n, 15,
                         f"novelty of frame {i}")
    names = [c.name for c in novelty_bundle.meta.classes]
    refs = reference_run(novelty_bundle, msgs)
    for msg, got, cov, (_, ref) in zip(msgs, novelty, coverages, refs, strict=True):
        assert got.header == msg.header and got.encoding == "mono8"
        assert np.array_equal(image_array(got), novelty_mono8(ref.novelty))
        assert cov.layout.dim[0].label.split(",") == [*names, UNKNOWN_NAME]
        np.testing.assert_allclose(np.asarray(cov.data)[:-1], coverage(ref.labels, len(names)),
                                   atol=1e-6)
        assert cov.data[-1] == pytest.approx(ref.novel_fraction, abs=1e-6)
    mean_novel = float(np.mean([ref.novel_fraction for _, ref in refs]))
    assert mean_novel > 0

    probe.spin_until(lambda: settled(latest_status(diags, NODE_NAME), len(msgs)), 10,
                     "diagnostics to account for every frame")
    # The period's mean: the last status may cover only some of the frames, or none.
    statuses = [latest_status(diags[:i + 1], NODE_NAME) for i in range(len(diags))]
    novel = [s for s in statuses if s and "novel_pixel_fraction" in s]
    assert novel, "no diagnostics with the novel-pixel fraction"
    assert all(s["level"] >= DiagnosticStatus.WARN and "novel" in s["message"] for s in novel)
    assert max(float(s["novel_pixel_fraction"]) for s in novel) > 0
