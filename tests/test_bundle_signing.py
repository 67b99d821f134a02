"""Signed bundles: with trusted keys, only a bundle signed by one of them loads, and no file of it
can be replaced even with its checksum updated (docs/bundle.md "Signed bundles")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool
from tests.support.media import scene, write_bag
from uwstego.bundle import (
    BUNDLE_FILE,
    MODEL_FILE,
    BundleError,
    load_bundle,
    sha256_file,
    sign_bundle,
)
from uwstego.signing import SIGNATURE_FILE, generate_key_pair

pytest.importorskip("cryptography")

CAMERA = (64, 48)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    for name in ("ours", "theirs"):
        generate_key_pair(root / f"{name}.pem", root / f"{name}.pub.pem")
    return {"private": root / "ours.pem", "public": root / "ours.pub.pem",
            "other_private": root / "theirs.pem", "other_public": root / "theirs.pub.pem"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path]:
    return (make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "a", camera=CAMERA),)


@pytest.fixture()
def signed(bundles, keys, tmp_path: Path) -> Path:
    out = shutil.copytree(bundles[0], tmp_path / "signed")
    sign_bundle(out, keys["private"])
    return out


def test_a_signed_bundle_loads_with_its_key(signed: Path, keys):
    bundle = load_bundle(signed, trusted_keys=[keys["public"]])
    assert bundle.meta.num_classes == 5
    assert load_bundle(signed, trusted_keys=[keys["other_public"], keys["public"]])


def test_unsigned_and_wrongly_signed_bundles_are_refused(bundles, signed: Path, keys,
                                                         tmp_path: Path):
    with pytest.raises(BundleError, match=r"bundle\.sig is missing: the bundle is not signed"):
        load_bundle(bundles[0], trusted_keys=[keys["public"]])
    with pytest.raises(BundleError, match="which is not one of the trusted keys"):
        load_bundle(signed, trusted_keys=[keys["other_public"]])
    with pytest.raises(BundleError, match="is not a PEM public key"):
        load_bundle(signed, trusted_keys=[keys["private"]])
    # A signature file carried over from another key's signature: the key id is forged.
    doc = json.loads((signed / SIGNATURE_FILE).read_text())
    forged = shutil.copytree(signed, tmp_path / "forged")
    sign_bundle(forged, keys["other_private"])
    other = json.loads((forged / SIGNATURE_FILE).read_text())
    (forged / SIGNATURE_FILE).write_text(json.dumps({**other, "key_id": doc["key_id"]}))
    with pytest.raises(BundleError, match=r"does not match bundle\.json"):
        load_bundle(forged, trusted_keys=[keys["public"]])


def test_a_replaced_graph_with_its_checksum_updated_is_refused(signed: Path, keys):
    onnx = pytest.importorskip("onnx")
    # Another graph with the same recorded settings: only the signature can tell them apart.
    graph = onnx.load(str(signed / MODEL_FILE))
    graph.graph.initializer[-1].raw_data = bytes(len(graph.graph.initializer[-1].raw_data))
    onnx.save(graph, str(signed / MODEL_FILE))
    doc = json.loads((signed / BUNDLE_FILE).read_text())
    doc["files"][MODEL_FILE] = sha256_file(signed / MODEL_FILE)
    (signed / BUNDLE_FILE).write_text(json.dumps(doc, indent=2))
    assert load_bundle(signed).model_sha256 == doc["files"][MODEL_FILE]  # no keys: it loads
    with pytest.raises(BundleError) as exc:
        load_bundle(signed, trusted_keys=[keys["public"]])
    assert "bundle was changed after it was signed" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_replay_with_a_trusted_key(bundles, signed: Path, keys, tmp_path: Path):
    bag = write_bag(tmp_path / "bag", [scene(i, *CAMERA[::-1]) for i in range(2)])
    refused = run_tool("uwstego", "replay", bag, "--bundle", bundles[0], "--backend",
                       "onnxruntime", "--trusted-key", keys["public"], "--no-progress",
                       timeout=120)
    assert_one_line_error(refused, "bundle.sig is missing")
    accepted = run_tool("uwstego", "replay", bag, "--bundle", signed, "--backend",
                        "onnxruntime", "--trusted-key", keys["public"], "--no-progress",
                        "--out", tmp_path / "seg", timeout=120)
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert "signature by trusted key" in accepted.stderr


def test_keygen_and_sign_commands(bundles, tmp_path: Path):
    made = run_tool("uwstego", "keygen", tmp_path / "k", timeout=60)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0  # the private key is the owner's
    assert_one_line_error(run_tool("uwstego", "keygen", tmp_path / "k", timeout=60),
                          "exists: refusing to overwrite a key")
    out = shutil.copytree(bundles[0], tmp_path / "b")
    signed = run_tool("uwstego", "sign", out, "--key", tmp_path / "k.pem", timeout=60)
    assert signed.returncode == 0, signed.stderr
    assert load_bundle(out, trusted_keys=[tmp_path / "k.pub.pem"])


def test_export_signs_with_sign_key_and_refuses_a_bad_key_before_exporting(keys, tmp_path):
    pytest.importorskip("torch")
    from tests.support.tiny_export import make_tiny_model
    from uwstego.training.artifact import save_trained_model

    model = save_trained_model(tmp_path / "model.pt", make_tiny_model())
    args = ("export", model, "--camera-size", "64x48", "--engine", "skip", "--frames", "1")
    bad = run_tool("uwstego", *args, "--out", tmp_path / "bad", "--sign-key", keys["public"],
                   timeout=180)
    assert_one_line_error(bad, "is not an unencrypted PEM private key")
    assert not (tmp_path / "bad").exists()
    good = run_tool("uwstego", *args, "--out", tmp_path / "b", "--sign-key", keys["private"],
                    timeout=180)
    assert good.returncode == 0, good.stderr[-2000:]
    assert load_bundle(tmp_path / "b", trusted_keys=[keys["public"]]).meta.num_classes == 5
