"""The node's ``trusted_keys``: with keys, an unsigned bundle is a failed start with the reason,
and a bundle signed by a trusted key segments (docs/bundle.md §3)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sensor_msgs.msg import Image

from edge.bundle import sign_bundle

from ros_harness import CAMERA, NODE_NAME
from test_ros_node import RELIABLE, START_TIMEOUT, raw_msg

pytest.importorskip("cryptography")


def test_trusted_keys_refuse_an_unsigned_bundle_and_run_a_signed_one(bundle, start_node, probe,
                                                                     tmp_path):
    from edge.signing import generate_key_pair

    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    keys = f"[{tmp_path / 'k.pub.pem'}]"
    refused = start_node(bundle, trusted_keys=keys, backend="onnxruntime")
    rc = refused.wait(START_TIMEOUT)
    text = refused.output()
    fatal = [line for line in text.splitlines() if "cannot start" in line]
    assert rc == 1 and len(fatal) == 1 and "bundle.sig is missing" in fatal[0], text
    assert "Traceback" not in text

    signed = shutil.copytree(bundle.path, tmp_path / "signed")
    sign_bundle(signed, tmp_path / "k.pem")
    node = start_node(signed, trusted_keys=keys, backend="onnxruntime", transport="raw",
                      qos="reliable")
    labels = probe.collect(Image, f"/{NODE_NAME}/labels")
    pub = probe.node.create_publisher(Image, "image", RELIABLE)
    probe.spin_until(lambda: pub.get_subscription_count() > 0, START_TIMEOUT,
                     "the node to subscribe")
    frame = np.random.default_rng(0).integers(0, 255, (CAMERA[1], CAMERA[0], 3), np.uint8)
    pub.publish(raw_msg(frame, "rgb8"))
    probe.spin_until(lambda: labels, START_TIMEOUT, "labels from the signed bundle")
    assert node.alive(), node.output()
