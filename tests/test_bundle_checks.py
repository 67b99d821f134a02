"""The bundle loader checks bundle.json against itself and against the graph it describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import uwstego.bundle as bundle_mod
from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool, snapshot
from tests.support.media import scene, write_bag
from uwstego.bundle import BUNDLE_FILE, MODEL_FILE, BundleError, load_bundle, sha256_file
from uwstego.contract import GRAPH_SETTINGS_KEY
from uwstego.graph_metadata import read_graph_metadata
from uwstego.segmenter import Segmenter
from uwstego.settings_io import MAX_NESTING, MAX_SETTINGS_BYTES

CAMERA = (64, 48)
K = 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", camera=CAMERA, k=K)


@pytest.fixture()
def copy(tiny: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(tiny, tmp_path / "b")
    return tmp_path / "b"


def _edit(bundle: Path, change) -> None:
    doc_path = bundle / BUNDLE_FILE
    doc = json.loads(doc_path.read_text())
    change(doc)
    doc_path.write_text(json.dumps(doc))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("classes", [3, 7])
def test_class_count_that_differs_from_the_graph_is_refused(copy: Path, classes: int):
    from uwstego.classes import classes_to_list, default_classes

    def change(doc):
        doc["classes"] = classes_to_list(default_classes(classes))
        doc["num_classes"] = classes

    _edit(copy, change)
    # bundle.json is consistent with itself, but not with the settings recorded in the graph
    with pytest.raises(BundleError) as exc:
        load_bundle(copy)
    assert f"field 'num_classes' says {classes}, the graph model.onnx was exported with {K}" \
        in _one_line(exc)


def test_num_classes_that_differs_from_the_class_list_is_refused(copy: Path):
    _edit(copy, lambda doc: doc.update(num_classes=7))
    with pytest.raises(BundleError) as exc:
        load_bundle(copy)
    assert "field 'num_classes': 7, but 'classes' lists 5" in _one_line(exc)


@pytest.mark.parametrize("field, value, message", [
    ("red_alpha", float("inf"), "field 'enhancement': red_alpha must be a finite number, got inf"),
    ("red_alpha", float("nan"), "red_alpha must be a finite number, got nan"),
    ("red_alpha", -1.0, "red_alpha must be >= 0"),
    ("saturation", 3.0, "saturation must be in (0, 1]"),
    ("gray_world", "yes", "gray_world must be true or false"),
])
def test_enhancement_numbers_must_be_finite_and_in_range(copy: Path, field, value, message):
    _edit(copy, lambda doc: doc["enhancement"].update({field: value}))
    with pytest.raises(BundleError) as exc:
        load_bundle(copy)
    assert message in _one_line(exc)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(patch_size=0), "field 'patch_size': must be positive, got 0"),
    (lambda d: d.update(patch_size=8.5), "field 'patch_size': expected a positive integer"),
    (lambda d: d["camera"].update(width=-64), "field 'camera': must be positive, got -64"),
    (lambda d: d["network"].update(height=0), "field 'network': must be positive, got 0"),
    (lambda d: d["model"]["outputs"]["labels"].__setitem__(1, [1, 10, 10]),
     "field 'model.outputs.labels': shape [1, 10, 10], but camera 64x48 means [1, 48, 64]"),
    (lambda d: d["model"]["inputs"].pop("enhance"), "field 'model.inputs': lists ['image']"),
    (lambda d: d.pop("backbone"), "field 'backbone' is missing"),
])
def test_sizes_and_declared_io_are_checked(copy: Path, change, message):
    _edit(copy, change)
    with pytest.raises(BundleError) as exc:
        load_bundle(copy)
    assert message in _one_line(exc)


def _no_reads_outside(monkeypatch, bundle: Path) -> list[Path]:
    read: list[Path] = []
    real = bundle_mod.sha256_file

    def recording(path, *args, **kwargs):
        read.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(bundle_mod, "sha256_file", recording)
    return read


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_files_outside_the_bundle_are_refused_before_anything_is_read(copy: Path, tmp_path: Path,
                                                                      monkeypatch, kind: str):
    outside = tmp_path / "big.bin"
    outside.write_bytes(b"x" * 1000)
    name = {"dotdot": "../big.bin", "absolute": str(outside), "symlink": "link.bin"}[kind]
    if kind == "symlink":
        (copy / "link.bin").symlink_to(outside)
    _edit(copy, lambda doc: doc["files"].update({name: sha256_file(outside)}))
    read = _no_reads_outside(monkeypatch, copy)
    with pytest.raises(BundleError) as exc:
        load_bundle(copy)
    line = _one_line(exc)
    assert "field 'files'" in line and repr(name) in line and "refused" in line
    assert ("outside the bundle folder" if kind == "symlink"
            else "not a path inside the bundle folder") in line
    assert read == []  # refused before even model.onnx was hashed


def test_truncated_graph_with_a_matching_checksum_is_one_line(copy: Path):
    model = copy / MODEL_FILE
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
    _edit(copy, lambda doc: doc["files"].update({MODEL_FILE: sha256_file(model)}))
    bundle = load_bundle(copy)
    with pytest.raises(BundleError) as exc:
        Segmenter(bundle, backend="onnxruntime")
    assert "model.onnx: ONNX Runtime cannot load the graph" in _one_line(exc)


@pytest.mark.parametrize("damage, needle", [
    ("classes", "field 'num_classes' says 3, the graph model.onnx was exported with 5"),
    ("truncated", "ONNX Runtime cannot load the graph"),
    ("red_alpha", "red_alpha must be a finite number, got inf"),
])
def test_replay_prints_one_line_for_a_bad_bundle(copy: Path, tmp_path: Path, damage, needle):
    from uwstego.classes import classes_to_list, default_classes

    if damage == "classes":
        _edit(copy, lambda d: d.update(classes=classes_to_list(default_classes(3)),
                                       num_classes=3))
    elif damage == "truncated":
        (copy / MODEL_FILE).write_bytes((copy / MODEL_FILE).read_bytes()[:5000])
        _edit(copy, lambda d: d["files"].update({MODEL_FILE: sha256_file(copy / MODEL_FILE)}))
    else:
        (copy / BUNDLE_FILE).write_text((copy / BUNDLE_FILE).read_text().replace(
            '"red_alpha": 1.0', '"red_alpha": Infinity'))
    bag = write_bag(tmp_path / "bag", [scene(i, *CAMERA[::-1]) for i in range(2)])
    before = snapshot(tmp_path)
    outcome = run_tool("uwstego", "replay", bag, "--bundle", copy, "--backend", "onnxruntime",
                       "--out", tmp_path / "seg", "--no-progress")
    assert_one_line_error(outcome, needle)
    assert snapshot(tmp_path) == before


# --- bounds, the graph's record of its settings, bounded reading (docs/bundle.md) ---------

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
