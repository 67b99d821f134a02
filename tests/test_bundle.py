from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from uwstego.bundle import (
    BUNDLE_FILE,
    MODEL_FILE,
    BundleError,
    BundleMeta,
    load_bundle,
    write_bundle,
)
from uwstego.classes import ClassInfo, default_classes
from uwstego.enhance import EnhanceSettings
from uwstego.image_size import Size


def _meta(k: int = 3) -> BundleMeta:
    return BundleMeta(camera=Size(128, 96), network=Size(64, 48), patch_size=8,
                      classes=default_classes(k), enhancement=EnhanceSettings(clahe=True),
                      backbone="tiny_vit8", provenance={"checkpoint": "model.pt"})


def test_round_trip(tmp_path: Path):
    written = write_bundle(tmp_path / "b", _meta(), {MODEL_FILE: b"onnx bytes", "notes.txt": b"x"})
    loaded = load_bundle(tmp_path / "b")
    assert loaded.meta == written.meta
    assert loaded.model_path.read_bytes() == b"onnx bytes"
    doc = json.loads((tmp_path / "b" / BUNDLE_FILE).read_text())
    assert doc["enhancement_steps"]["host"][-1] == "clahe"
    assert set(doc["files"]) == {MODEL_FILE, "notes.txt"}
    assert loaded.meta.num_classes == 3


def test_checksum_mismatch_names_the_file(tmp_path: Path):
    write_bundle(tmp_path / "b", _meta(), {MODEL_FILE: b"onnx bytes"})
    (tmp_path / "b" / MODEL_FILE).write_bytes(b"onnx bytez")
    with pytest.raises(BundleError, match=r"model\.onnx: checksum mismatch"):
        load_bundle(tmp_path / "b")


def test_missing_file_and_missing_json_are_partial_bundles(tmp_path: Path):
    write_bundle(tmp_path / "b", _meta(), {MODEL_FILE: b"m"})
    os.remove(tmp_path / "b" / MODEL_FILE)
    with pytest.raises(BundleError, match=r"missing.*partial bundle"):
        load_bundle(tmp_path / "b")
    os.remove(tmp_path / "b" / BUNDLE_FILE)
    with pytest.raises(BundleError, match=r"bundle\.json is missing"):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_damaged_json_and_wrong_schema(tmp_path: Path):
    write_bundle(tmp_path / "b", _meta(), {MODEL_FILE: b"m"})
    doc_path = tmp_path / "b" / BUNDLE_FILE
    doc = json.loads(doc_path.read_text())
    doc_path.write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema version 99"):
        load_bundle(tmp_path / "b")
    doc_path.write_text(doc_path.read_text()[:40])
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "b")
    del doc["patch_size"]
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="patch_size"):
        load_bundle(tmp_path / "b")


def test_failed_write_leaves_the_previous_bundle(tmp_path: Path):
    write_bundle(tmp_path / "b", _meta(), {MODEL_FILE: b"old"})

    with pytest.raises(FileNotFoundError):
        # The second file cannot be copied: the write must fail as a whole.
        write_bundle(tmp_path / "b", _meta(), {MODEL_FILE: b"new",
                                               "z.bin": tmp_path / "missing.bin"})
    assert load_bundle(tmp_path / "b").model_path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folders left


def test_refuses_to_overwrite_a_folder_that_is_not_a_bundle(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "dive.jpg").write_bytes(b"jpg")
    with pytest.raises(BundleError, match="not a bundle"):
        write_bundle(tmp_path / "photos", _meta(), {MODEL_FILE: b"m"})
    assert (tmp_path / "photos" / "dive.jpg").exists()


def test_meta_validation():
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        BundleMeta(camera=Size(128, 96), network=Size(60, 48), patch_size=8,
                   classes=default_classes(2), enhancement=EnhanceSettings(), backbone="x")
    with pytest.raises(ValueError, match=r"1\.\.255 classes"):
        default_classes(256)
    with pytest.raises(ValueError, match="colour"):
        ClassInfo("sand", (300, 0, 0))
    assert Size.parse("1280x720") == Size(1280, 720)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        Size.parse("1280")
