"""A bundle is what its graph says: every bundle.json field is bounded, the settings that change
the output are cross-checked against the graph's own record, and bundle.json is read bounded
(docs/bundle.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.bundle import BUNDLE_FILE, MODEL_FILE, BundleError, load_bundle
from edge.contract import GRAPH_SETTINGS_KEY
from edge.graph_metadata import read_graph_metadata
from edge.settings_io import MAX_NESTING, MAX_SETTINGS_BYTES
from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool
from tests.support.media import scene, write_bag

CAMERA = (64, 48)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", camera=CAMERA)


@pytest.fixture()
def copy(tiny: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny, tmp_path / "b")
    return tmp_path / "b"


def _edit(bundle: Path, change) -> None:
    doc_path = bundle / BUNDLE_FILE
    doc = json.loads(doc_path.read_text())
    change(doc)
    doc_path.write_text(json.dumps(doc))


def _refusal(bundle: Path) -> str:
    with pytest.raises(BundleError) as exc:
        load_bundle(bundle)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(bundle))
    return text


def test_the_export_records_the_settings_in_the_graph(tiny: Path):
    recorded = json.loads(read_graph_metadata(tiny / MODEL_FILE)[GRAPH_SETTINGS_KEY])
    assert recorded == load_bundle(tiny).meta.graph_settings()
    assert recorded["camera"] == {"width": CAMERA[0], "height": CAMERA[1]}


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(enhancement=[]), "field 'enhancement': enhancement settings: expected "
                                         "an object"),
    (lambda d: d["enhancement"].update(clahe=True, clahe_tiles=100000),
     "clahe_tiles must be <= 64, got 100000"),
    (lambda d: d["enhancement"].update(clahe=True, clahe_tiles=1e9),
     "clahe_tiles must be an integer, got 1000000000.0"),
    (lambda d: d["enhancement"].update(gain_max=1e300), "gain_max must be <= 100.0"),
    (lambda d: d["camera"].update(width=10**9), "field 'camera': must be at most 8192"),
    (lambda d: d.update(patch_size=2**40), "field 'patch_size': must be at most 64"),
    (lambda d: d.update(backbone="x" * 10000), "field 'backbone': expected a non-empty string"),
])
def test_out_of_bounds_fields_are_refused_naming_the_field(copy: Path, change, needle):
    _edit(copy, change)
    assert needle in _refusal(copy)


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["enhancement"].update(clahe=True),
     "field 'enhancement.clahe' says true, the graph model.onnx was exported with false"),
    (lambda d: d["enhancement"].update(red_alpha=0.5),
     "field 'enhancement.red_alpha' says 0.5, the graph model.onnx was exported with 1.0"),
    (lambda d: d.update(backbone="dino_vits8"), "field 'backbone' says \"dino_vits8\""),
])
def test_settings_that_differ_from_the_graphs_record_are_refused(copy: Path, change, needle):
    _edit(copy, change)
    text = _refusal(copy)
    assert needle in text and "re-export" in text


def test_class_names_and_colours_stay_editable(copy: Path):
    _edit(copy, lambda d: d["classes"][0].update(name="sand", color=[1, 2, 3]))
    assert load_bundle(copy).meta.classes[0].name == "sand"


def test_deep_and_large_bundle_json_are_refused_before_parsing(copy: Path):
    doc_path = copy / BUNDLE_FILE
    doc_path.write_text("[" * 100_000 + "]" * 100_000)
    assert f"nests deeper than {MAX_NESTING} levels" in _refusal(copy)
    doc = doc_path.read_text()
    doc_path.write_text(json.dumps({"provenance": {"pad": "x" * MAX_SETTINGS_BYTES}}) + doc)
    assert f"over {MAX_SETTINGS_BYTES} bytes" in _refusal(copy)


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(enhancement=[]), "field 'enhancement'"),
    (lambda d: d["enhancement"].update(clahe=True), "field 'enhancement.clahe' says true"),
    (None, "nests deeper than"),
])
def test_replay_refuses_an_edited_bundle_in_one_line(copy: Path, tmp_path: Path, change, needle):
    if change is None:
        (copy / BUNDLE_FILE).write_text("{" + '"a":[' * 100_000)
    else:
        _edit(copy, change)
    bag = write_bag(tmp_path / "bag", [scene(i, *CAMERA[::-1]) for i in range(2)])
    outcome = run_tool("uwstego", "replay", bag, "--bundle", copy, "--backend", "onnxruntime",
                       "--out", tmp_path / "seg", "--no-progress", timeout=120)
    assert_one_line_error(outcome, needle)
    assert not (tmp_path / "seg").exists()
