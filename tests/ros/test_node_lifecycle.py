"""The node as a managed node: every lifecycle transition through the lifecycle_msgs services
of a running process, a model swap while inactive, shutdown from each primary state, and
deactivate/activate cycles and model swaps while a camera floods the node."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from tests.support.bundles import make_tiny_bundle
from uwstego.bundle import load_bundle
from uwstego.enhance import EnhanceSettings
from uwstego.segmenter import Segmenter

from ros_harness import CAMERA, Flood, Lifecycle
from test_ros_node import _frame, _set_parameter, image_array, latest_status, raw_msg

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TIMEOUT = 60.0
FLOOD_HZ = 200.0
CYCLES = 20
SWAP_EVERY = 5  # cycles: a model swap instead of a plain deactivate/activate


def _labels_of(probe, pub, labels, frame_id: str, timeout: float = 15.0) -> Image:
    msg = raw_msg(_frame(60), "rgb8")
    msg.header.frame_id = frame_id
    pub.publish(msg)
    probe.spin_until(lambda: any(m.header.frame_id == frame_id for m in labels), timeout,
                     f"labels of {frame_id}")
    return next(m for m in labels if m.header.frame_id == frame_id)


def _reference(bundle_path) -> np.ndarray:
    seg = Segmenter(load_bundle(bundle_path), backend="onnxruntime")
    return seg.segment(_frame(60)).labels


def test_full_transition_graph_with_a_bundle_swap(bundle, start_node, probe, tmp_path):
    other = make_tiny_bundle(tmp_path / "other", camera=CAMERA, seed=1, k=4,
                             enhancement=EnhanceSettings.raw())
    main = start_node(bundle, name="seg_managed", namespace="/m", transport="raw",
                      qos="reliable", backend="onnxruntime", autostart=False)
    from_unconfigured = start_node(bundle, name="seg_u", autostart=False)
    from_inactive = start_node(bundle, name="seg_i", autostart=False, backend="onnxruntime")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    labels = probe.collect(Image, "/m/seg_managed/labels")
    pub = probe.node.create_publisher(Image, "/m/image", RELIABLE)
    life = Lifecycle(probe, "m/seg_managed")

    # unconfigured: nothing subscribed, diagnostics say why nothing is segmented
    assert life.state() == "unconfigured"
    assert life.transitions() == {"configure", "shutdown"}
    probe.spin_until(lambda: latest_status(diags, "seg_managed"), TIMEOUT, "diagnostics")
    status = latest_status(diags, "seg_managed")
    assert status["level"] == DiagnosticStatus.WARN and "unconfigured" in status["message"]

    # a configure that fails leaves the node unconfigured and alive, with the reason logged
    assert _set_parameter(probe, "m/seg_managed", "bundle", str(tmp_path / "nowhere"))[0]
    assert not life.trigger(Transition.TRANSITION_CONFIGURE)
    assert life.state() == "unconfigured" and main.alive()
    assert "configure failed" in main.output() and "does not exist" in main.output()
    assert _set_parameter(probe, "m/seg_managed", "bundle", str(bundle.path))[0]

    # configure -> inactive: publishers exist, no subscription yet
    assert life.trigger(Transition.TRANSITION_CONFIGURE)
    assert life.state() == "inactive"
    assert life.transitions() == {"cleanup", "activate", "shutdown"}
    assert pub.get_subscription_count() == 0
    assert probe.node.count_publishers("/m/seg_managed/labels") == 1

    # activate -> active: segments with the first bundle
    assert life.trigger(Transition.TRANSITION_ACTIVATE)
    assert life.state() == "active"
    assert life.transitions() == {"deactivate", "shutdown"}
    probe.spin_until(lambda: pub.get_subscription_count() == 1, TIMEOUT, "the subscription")
    first = _labels_of(probe, pub, labels, "with_first")
    assert np.array_equal(image_array(first), _reference(bundle.path))
    ok, reason = _set_parameter(probe, "m/seg_managed", "bundle", str(other))
    assert not ok and "not active" in reason

    # deactivate -> inactive: frames are no longer taken
    assert life.trigger(Transition.TRANSITION_DEACTIVATE)
    assert life.state() == "inactive"
    probe.spin_until(lambda: pub.get_subscription_count() == 0, TIMEOUT, "unsubscribing")
    pub.publish(raw_msg(_frame(61), "rgb8"))
    probe.spin_for(0.5)
    assert all(m.header.frame_id == "with_first" for m in labels)

    # swap: set the bundle while inactive, cleanup, configure, activate
    assert _set_parameter(probe, "m/seg_managed", "bundle", str(other))[0]
    assert life.trigger(Transition.TRANSITION_CLEANUP)
    assert life.state() == "unconfigured"
    assert probe.node.count_publishers("/m/seg_managed/labels") == 0
    assert life.trigger(Transition.TRANSITION_CONFIGURE)
    assert life.trigger(Transition.TRANSITION_ACTIVATE)
    probe.spin_until(lambda: pub.get_subscription_count() == 1, TIMEOUT, "the subscription")
    swapped = _labels_of(probe, pub, labels, "with_other")
    assert np.array_equal(image_array(swapped), _reference(other))
    assert not np.array_equal(image_array(swapped), image_array(first))
    assert main.output().count("cleaned up: backend released") == 1

    # shutdown from each primary state ends the process cleanly
    for node, name, steps in ((main, "m/seg_managed", []),
                              (from_unconfigured, "seg_u", []),
                              (from_inactive, "seg_i", [Transition.TRANSITION_CONFIGURE])):
        client = Lifecycle(probe, name)
        for step in steps:
            assert client.trigger(step)
        before = client.state()
        shutdown = {"active": Transition.TRANSITION_ACTIVE_SHUTDOWN,
                    "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                    "unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}[before]
        assert client.trigger(shutdown), before
        assert node.wait(TIMEOUT) == 0, node.output()  # finalized: the process ends


def _stamp_index(msg: Image) -> int:
    return msg.header.stamp.sec - 1000  # raw_msg stamps frame i at 1000 + i s


def test_toggles_and_swaps_under_a_raw_flood(bundle, start_node, probe, tmp_path):
    """Deactivate/activate and swap the model while a 200 Hz raw camera streams: the node
    survives every transition and each activation segments with the bundle it was given."""
    other = make_tiny_bundle(tmp_path / "other", camera=CAMERA, seed=1, k=4,
                             enhancement=EnhanceSettings.raw())
    references = {str(bundle.path): _reference(bundle.path), str(other): _reference(other)}
    node = start_node(bundle, name="seg_flood", transport="raw", backend="onnxruntime")
    labels = probe.collect(Image, "/seg_flood/labels", qos_profile_sensor_data)
    life = Lifecycle(probe, "seg_flood", TIMEOUT, node)
    flood = Flood(Image, "image", lambda i: raw_msg(_frame(60), "rgb8", i), FLOOD_HZ,
                  qos_profile_sensor_data)
    current = str(bundle.path)
    try:
        for cycle in range(CYCLES):
            since = flood.sent
            probe.spin_until(lambda s=since: any(_stamp_index(m) >= s for m in labels),
                             TIMEOUT, f"labels after activation {cycle}")
            assert node.alive(), node.output()
            fresh = next(m for m in labels if _stamp_index(m) >= since)
            assert np.array_equal(image_array(fresh), references[current]), cycle
            assert life.trigger(Transition.TRANSITION_DEACTIVATE), node.output()
            if cycle % SWAP_EVERY == SWAP_EVERY - 1:
                current = str(other) if current == str(bundle.path) else str(bundle.path)
                assert _set_parameter(probe, "seg_flood", "bundle", current)[0]
                assert life.trigger(Transition.TRANSITION_CLEANUP), node.output()
                assert life.trigger(Transition.TRANSITION_CONFIGURE), node.output()
            labels.clear()
            assert life.trigger(Transition.TRANSITION_ACTIVATE), node.output()
            assert node.alive(), node.output()
    finally:
        flood.close()
    assert node.alive(), node.output()
    assert life.state() == "active"
    for msg in labels:  # never a label of another model or a half-swapped one
        assert any(np.array_equal(image_array(msg), ref) for ref in references.values())
    assert "Traceback" not in node.output()
