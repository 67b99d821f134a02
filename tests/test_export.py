"""export-trt: the fused graph at two camera sizes, its checks, and every refusal before writing."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import onnx
import torch
from onnx import TensorProto, helper

from tests.support.tiny_export import make_tiny_model
from uwstego.bundle import BUNDLE_FILE, MODEL_FILE, load_bundle
from uwstego.enhance import EnhanceSettings
from uwstego.export.cli import main as export_main
from uwstego.export.opcheck import GraphCheckError, check_graph, trt_problems
from uwstego.export.pipeline import ExportError, default_network_size, export_bundle
from uwstego.export.reference import ReferenceSegmenter
from uwstego.export.settings import ExportSettings
from uwstego.export.validate import ParityError, ort_session
from uwstego.image_size import Size
from uwstego.sample_frames import host_stage, synthetic_frames
from uwstego.training.artifact import save_trained_model
from uwstego.trust import NAME_KEY, OFFICIAL, RANDOM, TRUST_KEY, ModelTrust, read_trust

DATA = Path(os.environ.get("UWSTEGO_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared/data/underwater"))
# (camera, network): a downscale with a 3:2 aspect and a 4:3 camera at half size.
SIZES = [((96, 64), (96, 64)), ((128, 96), (64, 48))]
DEPTH = 2  # tiny_vit8


@pytest.fixture(scope="module")
def model():
    # Blue compensation on too, so every graph-stage parameter is exercised.
    return make_tiny_model(seed=3, k=5, enhancement=EnhanceSettings(blue_compensation=True))


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    return save_trained_model(tmp_path_factory.mktemp("ckpt") / "model.pt", model)


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s[0][0]}x{s[0][1]}")
def exported(request, checkpoint, tmp_path_factory):
    camera, network = (Size(*s) for s in request.param)
    out = tmp_path_factory.mktemp("bundle") / "b"
    bundle = export_bundle(checkpoint, out, ExportSettings(camera=camera, network=network, frames=2,
                                                           engine="skip"))
    return bundle, camera, network


def test_bundle_records_parity_and_loads(exported):
    bundle, camera, network = exported
    loaded = load_bundle(bundle.path)
    assert (loaded.meta.camera, loaded.meta.network) == (camera, network)
    parity = loaded.meta.validation["onnxruntime_cpu_vs_pytorch"]
    assert parity["label_agreement"] >= 0.995
    assert parity["graph_confidence_max_abs"] < 1e-4
    doc = json.loads((bundle.path / BUNDLE_FILE).read_text())
    assert doc["provenance"]["num_clusters"] == 5
    assert doc["enhancement_steps"]["graph"] == ["red_compensation", "blue_compensation",
                                                 "gray_world", "imagenet_normalisation"]


def test_graph_io_and_structure(exported):
    bundle, camera, _ = exported
    graph = onnx.load(str(bundle.model_path))
    session = ort_session(bundle.model_path)
    h, w = camera.height, camera.width
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("image", "tensor(uint8)", [1, h, w, 3]), ("enhance", "tensor(float)", [1, 5])]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        ("labels", "tensor(uint8)", [1, h, w]), ("confidence", "tensor(float)", [1, h, w])]
    assert graph.opset_import[0].version == 17
    ops = Counter(n.op_type for n in graph.graph.node)
    # Native LayerNorm (2 per block + final), explicit attention, no shape arithmetic left.
    assert ops["LayerNormalization"] == 2 * DEPTH + 1 and ops["Softmax"] == DEPTH
    assert not {"Einsum", "ReduceMean", "Pow", "Shape", "Identity", "ConstantOfShape"} & set(ops)
    producer = {o: n for n in graph.graph.node for o in n.output}
    cast_u8 = producer["labels"]
    cast_f = producer[cast_u8.input[0]]
    assert (cast_u8.op_type, cast_f.op_type, producer[cast_f.input[0]].op_type) == \
        ("Cast", "Cast", "ArgMax")
    assert [n.op_type for n in graph.graph.node if "image" in n.input] == ["Cast"]
    assert trt_problems(graph) == []


def test_onnxruntime_matches_pytorch_reference_on_fresh_frames(exported, model):
    bundle, camera, network = exported
    backbone, head = model.build_modules()
    reference = ReferenceSegmenter(backbone, head, model.centroids, network)
    session = ort_session(bundle.model_path)
    agree = pixels = 0
    for image, params in host_stage(synthetic_frames(camera, 3, seed=11), model.enhancement):
        labels, conf = (o[0] for o in session.run(None, {"image": image[None],
                                                         "enhance": params[None]}))
        ref_labels, ref_conf = reference.segment(image, params)
        agree += int((labels == ref_labels).sum())
        pixels += labels.size
        # The fused confidence is the official cosine shrunk toward 0 (export/fused.py) ...
        clear = np.abs(ref_conf) > 1e-4
        assert np.all(np.sign(conf[clear]) == np.sign(ref_conf[clear]))
        assert np.all(np.abs(conf) <= np.abs(ref_conf) + 1e-5)
        # ... and exact where the upsampling reads one patch: the corners, where both axes clamp.
        if (camera.width, camera.height) == (network.width, network.height):
            corner = slice(0, 4)  # pixels 0..3 map before the first patch centre (3.5)
            np.testing.assert_allclose(conf[corner, corner], ref_conf[corner, corner],
                                       atol=1e-5)
    assert agree / pixels >= 0.995
    assert len(np.unique(labels)) > 1  # the check means something: several classes occur


def test_parity_on_real_underwater_photos(checkpoint, tmp_path):
    photos = DATA / "suim" / "images"
    if not photos.is_dir():
        pytest.skip(f"underwater photos not found at {photos} (set UWSTEGO_DATA)")
    bundle = export_bundle(checkpoint, tmp_path / "b", ExportSettings(camera="96x64",
                                                                      network="96x64",
                                                                      samples=photos, frames=2,
                                                                      engine="skip"))
    parity = bundle.meta.validation["onnxruntime_cpu_vs_pytorch"]
    assert parity["frame_source"] == str(photos) and parity["frames"] == 2
    assert parity["label_agreement"] >= 0.995


def test_graph_stage_enhancement_mirrors_numpy():
    from uwstego.enhance import apply_params
    from uwstego.export.fused import apply_params_torch

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, size=(16, 24, 3)).astype(np.float32)
    for params in ([0.2, 0.1, 1.3, 0.9, 2.0], [0.0, 0.0, 1.0, 1.0, 1.0], [-0.1, 0.3, 3, 3, 3]):
        p = np.asarray(params, dtype=np.float32)
        torch_out = apply_params_torch(torch.from_numpy(img).permute(2, 0, 1)[None],
                                       torch.from_numpy(p)[None])
        np.testing.assert_array_equal(torch_out[0].permute(1, 2, 0).numpy(),
                                      apply_params(img, p))


def _model(nodes, inputs, outputs, initializers=(), opset=17, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets)


def _f(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _const(name, values, dtype=np.int64):
    return onnx.numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


BAD_GRAPHS = {
    "cubic resize": (_model(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic")],
        [_f("x", [1, 3, 4, 4])], [_f("y", [1, 3, 8, 8])], [_const("sizes", [1, 3, 8, 8])]),
        "mode 'cubic'"),
    "argmax without cast": (_model(
        [helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)],
        [_f("x", [1, 3, 4, 4])], [_f("y", [1, 4, 4], TensorProto.INT64)]),
        "followed by an explicit Cast"),
    "int32 to uint8": (_model(
        [helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
         helper.make_node("Cast", ["i"], ["y"], to=TensorProto.UINT8)],
        [_f("x", [1, 3, 4, 4])], [_f("y", [1, 4, 4], TensorProto.UINT8)]),
        "casts between uint8 and INT64"),
    "dynamic batch": (_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [_f("x", ["batch", 3])], [_f("y", ["batch", 3])]),
        "without a static shape"),
    "runtime reshape": (_model(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
        [_f("x", [2, 3])], [_f("y", [2, 3])]),
        "input 1 .* must be an initializer"),
    "custom op": (_model(
        [helper.make_node("FusedGelu", ["x"], ["y"], domain="com.microsoft")],
        [_f("x", [2, 3])], [_f("y", [2, 3])], domains=("com.microsoft",)),
        "custom domain 'com.microsoft'"),
    "opset 18": (_model(
        [helper.make_node("Relu", ["x"], ["y"])], [_f("x", [2])], [_f("y", [2])], opset=18),
        "opset 18"),
}


@pytest.mark.parametrize("name", sorted(BAD_GRAPHS))
def test_op_check_catches_bad_graphs(name):
    model, expected = BAD_GRAPHS[name]
    problems = trt_problems(model)
    assert any(re.search(expected, p) for p in problems), problems


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter, on purpose
def test_op_check_catches_einsum_from_the_real_exporter(tmp_path):
    class Cosine(torch.nn.Module):
        def forward(self, code):
            return torch.einsum("bchw,kc->bkhw", code, torch.ones(4, 6))

    path = tmp_path / "einsum.onnx"
    torch.onnx.export(Cosine(), (torch.zeros(1, 6, 4, 4),), str(path), dynamo=False,
                      opset_version=17)
    problems = trt_problems(onnx.load(str(path)))
    assert any(p.startswith("Einsum") and "MatMul or a 1x1 Conv" in p for p in problems)
    with pytest.raises(GraphCheckError, match="graph I/O is inputs"):
        check_graph(onnx.load(str(path)), Size(4, 4))


def test_default_network_size_keeps_aspect_in_patch_multiples():
    assert default_network_size(Size(1280, 720), 224, 8) == Size(400, 224)
    assert default_network_size(Size(720, 1280), 224, 14) == Size(224, 392)
    assert default_network_size(Size(64, 48), 48, 8) == Size(64, 48)


@pytest.mark.parametrize(("network", "message"), [
    ("100x64", "not a multiple of the patch size 8; e.g. --network-size 96x64"),
    ("96x96", "does not keep the camera aspect"),
])
def test_bad_network_sizes_are_refused_before_writing(checkpoint, tmp_path, network, message):
    with pytest.raises(ExportError, match=message):
        export_bundle(checkpoint, tmp_path / "b", ExportSettings(camera="96x64", network=network,
                                                                 engine="skip"))
    assert not (tmp_path / "b").exists()


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_bundle(tmp_path / "nope.pt", tmp_path / "b", ExportSettings(camera="96x64"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a torch file" * 64)
    with pytest.raises(ExportError, match=r"corrupt\.pt: not a readable uwstego model file"):
        export_bundle(corrupt, tmp_path / "b", ExportSettings(camera="96x64"))
    assert not (tmp_path / "b").exists()


def test_too_many_clusters_for_uint8(model, tmp_path):
    data = model.to_dict()
    rng = np.random.default_rng(0)
    cent = rng.normal(size=(300, model.head_config.code_dim)).astype(np.float32)
    data["centroids"] = torch.from_numpy(cent / np.linalg.norm(cent, axis=1, keepdims=True))
    data["classes"] = [{"name": f"c{i}", "color": [i % 256, 0, 0]} for i in range(300)]
    torch.save(data, tmp_path / "k300.pt")
    with pytest.raises(ExportError, match="300 classes: labels are uint8"):
        export_bundle(tmp_path / "k300.pt", tmp_path / "b", ExportSettings(camera="96x64"))


def test_unwritable_or_foreign_output_folders(checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="is not a folder"):
        export_bundle(checkpoint, blocker / "bundle", ExportSettings(camera="96x64"))
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "dive.jpg").write_bytes(b"jpeg")
    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_bundle(checkpoint, foreign, ExportSettings(camera="96x64"))
    assert [p.name for p in foreign.iterdir()] == ["dive.jpg"]


def test_failed_validation_leaves_the_previous_bundle_intact(exported, checkpoint):
    bundle, camera, network = exported
    before = load_bundle(bundle.path).model_sha256
    with pytest.raises(ParityError, match="nothing written"):
        export_bundle(checkpoint, bundle.path, ExportSettings(camera=camera, network=network,
                                                              frames=1, min_agreement=1.01,
                                                              engine="skip"))
    assert load_bundle(bundle.path).model_sha256 == before
    leftovers = [p.name for p in bundle.path.parent.iterdir() if p.name != bundle.path.name]
    assert leftovers == []


def test_cli_writes_a_bundle_and_reports_errors_in_one_line(checkpoint, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "cli_bundle"
    assert export_main([str(checkpoint), "--camera-size", "64x48", "--out", str(out),
                        "--frames", "1"]) == 0
    # Default network size: the training resolution (64) on the short side, aspect kept.
    assert (out / MODEL_FILE).is_file() and load_bundle(out).meta.network == Size(88, 64)
    assert "engine will be built on the target" in caplog.text
    assert export_main([str(checkpoint), "--camera-size", "64x48", "--network-size", "60x45",
                        "--out", str(tmp_path / "bad")]) == 1
    assert "not a multiple of the patch size" in caplog.text


def test_engine_required_without_tensorrt_fails_before_writing(checkpoint, tmp_path):
    from uwstego.trt import missing_packages

    if not missing_packages():
        pytest.skip("TensorRT and pycuda are installed here")
    with pytest.raises(ExportError, match=r"--engine require, but .* cannot be imported"):
        export_bundle(checkpoint, tmp_path / "b", ExportSettings(camera="96x64", engine="require"))
    assert not (tmp_path / "b").exists()


def test_export_names_the_model_and_states_its_trust(model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    # A model trained before the trust facts were recorded: they are derived from provenance.
    random_model = dataclasses.replace(model, provenance={
        "random_weights": True, "train_settings": {"steps": 7}, "images": 12,
        "sources": [{"kind": "images", "path": "/dives/reef"}]})
    ckpt = save_trained_model(tmp_path / "runs" / "reef" / "model.pt", random_model)
    args = ["--camera-size", "64x48", "--frames", "1", "--engine", "skip"]
    assert export_main([str(ckpt), "--out", str(tmp_path / "bundle"), *args]) == 0
    provenance = load_bundle(tmp_path / "bundle").meta.provenance
    assert provenance[NAME_KEY] == "reef"  # the run's folder, not the bundle's
    assert read_trust(provenance) == ModelTrust(RANDOM, model.backbone,
                                                "12 crops from images /dives/reef", 7,
                                                model.num_clusters)
    assert ExportSettings.from_dict(provenance["export_settings"]) == \
        ExportSettings(camera=Size(64, 48), frames=1, engine="skip")
    random_warnings = [r for r in caplog.records
                       if r.levelno == logging.WARNING and "RANDOM weights" in r.getMessage()]
    assert len(random_warnings) == 1
    assert f"trust: weights random, backbone {model.backbone}" in caplog.text

    caplog.clear()
    trusted = dataclasses.replace(model, provenance={TRUST_KEY: ModelTrust(
        OFFICIAL, model.backbone, "40 crops from images /dives/reef", 5000, 5).to_dict()})
    ckpt = save_trained_model(tmp_path / "trusted.pt", trusted)
    assert export_main([str(ckpt), "--out", str(tmp_path / "named"), "--name", "reef v2",
                        *args]) == 0
    provenance = load_bundle(tmp_path / "named").meta.provenance
    assert provenance[NAME_KEY] == "reef v2" and read_trust(provenance).weights == OFFICIAL
    assert "RANDOM" not in caplog.text and "model reef v2" in caplog.text


def test_export_settings_are_read_back_strictly():
    settings = ExportSettings(camera="1280x720", network="448x252", samples="frames", int8=True)
    assert settings.camera == Size(1280, 720) and settings.samples == Path("frames")
    assert ExportSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    with pytest.raises(ValueError, match=r"unknown export settings \['precison'\]"):
        ExportSettings.from_dict({**settings.to_dict(), "precison": "fp16"})
    with pytest.raises(ValueError, match="precision 'int4'"):
        ExportSettings(camera="64x48", precision="int4")


def test_export_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        export_main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":mod:" not in text and "--name NAME" in text
