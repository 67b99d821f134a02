"""The node refuses a bundle that is not what its graph says with the reason (docs/bundle.md):
an edited or hostile bundle.json, and with ``trusted_keys`` an unsigned bundle; a bundle signed by
a trusted key segments."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sensor_msgs.msg import Image

from uwstego.bundle import sign_bundle

from ros_harness import CAMERA, NODE_NAME
from test_ros_node import RELIABLE, START_TIMEOUT, raw_msg


@pytest.mark.parametrize("damage, reason", [
    ("enhancement", "field 'enhancement': enhancement settings: expected an object"),
    ("clahe", "field 'enhancement.clahe' says true, the graph model.onnx was exported with false"),
    ("deep", "nests deeper than 32 levels"),
])
def test_an_edited_bundle_is_a_failed_start_with_its_reason(bundle, start_node, tmp_path, damage,
                                                            reason):
    edited = shutil.copytree(bundle.path, tmp_path / "edited")
    doc = json.loads((edited / "bundle.json").read_text())
    if damage == "enhancement":
        doc["enhancement"] = []
    elif damage == "clahe":
        doc["enhancement"]["clahe"] = True
    text = "[" * 100_000 + "]" * 100_000 if damage == "deep" else json.dumps(doc)
    (edited / "bundle.json").write_text(text)
    node = start_node(edited, backend="onnxruntime")
    rc = node.wait(START_TIMEOUT)
    output = node.output()
    fatal = [line for line in output.splitlines() if "cannot start" in line]
    assert rc == 1 and len(fatal) == 1 and reason in fatal[0], output
    assert "Traceback" not in output


def test_trusted_keys_refuse_an_unsigned_bundle_and_run_a_signed_one(bundle, start_node, probe,
                                                                     tmp_path):
    pytest.importorskip("cryptography")
    from uwstego.signing import generate_key_pair

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
