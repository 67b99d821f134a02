"""Agreement that means something, the FP16 check and the INT8 QDQ graph (issue 15)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

import onnx
from onnx import TensorProto, helper

from tests.support.tiny_export import make_tiny_model
from uwstego.agreement import (
    FAILED,
    NOT_INFORMATIVE,
    PASSED,
    AgreementCounter,
    format_percent,
)
from uwstego.bundle import INT8_MODEL_FILE, MODEL_FILE, BundleError, load_bundle
from uwstego.cpu_graphs import DYNAMIC_INT8_MODEL_FILE, FUSED_MODEL_FILE
from uwstego.export.cli import main as export_main
from uwstego.export.opcheck import check_graph, trt_problems
from uwstego.export.pipeline import ExportError, export_bundle, split_frames
from uwstego.export.settings import ExportSettings
from uwstego.image_size import Size
from uwstego.sample_frames import synthetic_frames
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import load_trained_model, save_trained_model
from uwstego.training.pipeline import run_training
from uwstego.training.settings import PipelineSettings, TrainSettings

CAMERA = "96x64"


def _agreement(reference, labels, threshold=0.995):
    counter = AgreementCounter()
    counter.add(np.asarray(labels, np.uint8), np.asarray(reference, np.uint8))
    return counter.result(threshold)


def test_a_single_class_reference_is_never_passed():
    one_class = np.zeros((8, 8))
    result = _agreement(one_class, one_class)
    assert result.fraction == 1.0 and result.classes_present == 1
    assert result.entropy_bits == 0.0 and result.status == NOT_INFORMATIVE
    assert "1 class(es)" in result.describe() and "not informative" in result.describe()
    # Wrong labels are evidence on any frames: a one-class reference can still fail.
    assert _agreement(one_class, np.ones((8, 8))).status == FAILED
    # Two classes, but a constant output would pass: still not informative.
    mostly = np.zeros(1000)
    mostly[:3] = 1
    assert _agreement(mostly, mostly).status == NOT_INFORMATIVE
    halves = np.repeat([0, 1], 500)
    split = _agreement(halves, halves)
    assert split.status == PASSED and split.classes_present == 2
    assert split.entropy_bits == pytest.approx(1.0)
    assert split.to_dict()["informative"] is True


def test_percentages_are_not_rounded_to_100():
    assert format_percent(999_997, 1_000_000) == "99.9997"
    assert format_percent(9_999_999, 10_000_000) == "99.99999"
    assert format_percent(1_000_000, 1_000_000) == "100.0000"
    assert format_percent(1, 10_000_000) == "0.00001"


def test_calibration_and_validation_frames_are_disjoint_and_spread():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(12)]
    check, calib = split_frames(frames, 4, 8)
    ids = [int(f[0, 0, 0]) for f in check], [int(f[0, 0, 0]) for f in calib]
    assert len(ids[0]) == 4 and len(ids[1]) == 8 and not set(ids[0]) & set(ids[1])
    assert split_frames(frames[:1], 4, 8) == (frames[:1], frames[:1])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_trained_model(tmp_path_factory.mktemp("ckpt") / "model.pt",
                              make_tiny_model(seed=3, k=5))


@pytest.fixture(scope="module")
def one_class_checkpoint(tmp_path_factory):
    """Two identical centroids: the argmax always picks the first, one class everywhere."""
    model = make_tiny_model(seed=3, k=2)
    model = dataclasses.replace(model, centroids=np.repeat(model.centroids[:1], 2, axis=0))
    return save_trained_model(tmp_path_factory.mktemp("one") / "model.pt", model)


def test_export_reports_a_one_class_check_as_not_informative(one_class_checkpoint, tmp_path,
                                                             caplog):
    caplog.set_level(logging.WARNING)
    bundle = export_bundle(one_class_checkpoint, tmp_path / "b", ExportSettings(camera=CAMERA,
                                                                                frames=2,
                                                                                engine="skip"))
    parity = load_bundle(bundle.path).meta.validation["onnxruntime_cpu_vs_pytorch"]
    assert parity["classes_present"] == 1 and parity["status"] == NOT_INFORMATIVE
    assert parity["label_agreement_percent"] == "100.0000"
    assert bundle.meta.validation["warnings"]
    assert "PRECISION WARNING: FP32 parity is not informative" in caplog.text
    with pytest.raises(ExportError, match="--strict-precision: FP32 parity is not informative"):
        export_bundle(one_class_checkpoint, tmp_path / "strict", ExportSettings(camera=CAMERA,
                                                                                frames=2,
                                                                                engine="skip",
                                                                                strict_precision=True))
    assert not (tmp_path / "strict").exists()


@pytest.fixture(scope="module")
def int8_bundle(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "b"
    return export_bundle(checkpoint, out, ExportSettings(camera=CAMERA, frames=2, int8=True,
                                                         calibration_frames=3, engine="skip"))


def test_fp16_check_on_a_model_whose_classes_split(int8_bundle):
    fp16 = int8_bundle.meta.validation["fp16_vs_fp32"]
    assert fp16["classes_present"] >= 2 and fp16["informative"]
    assert fp16["label_agreement"] >= 0.99 and fp16["status"] == PASSED
    assert "LayerNormalization" in fp16["method"] and "Softmax" in fp16["method"]
    assert 0 < fp16["confidence_max_abs"] < 0.05  # FP16 rounding shows, but stays small
    parity = int8_bundle.meta.validation["onnxruntime_cpu_vs_pytorch"]
    assert parity["status"] == PASSED and parity["classes_present"] >= 2


def test_int8_bundle_round_trip_with_both_graphs(int8_bundle):
    loaded = load_bundle(int8_bundle.path)
    # The TensorRT graphs, and ONNX Runtime's CPU graphs (docs/deploy.md §11).
    assert set(loaded.checksums) == {MODEL_FILE, INT8_MODEL_FILE, FUSED_MODEL_FILE,
                                     DYNAMIC_INT8_MODEL_FILE}
    assert loaded.graph_path("int8").name == INT8_MODEL_FILE
    assert loaded.graph_path("fp16").name == MODEL_FILE
    int8 = loaded.meta.validation["int8_vs_fp32"]
    assert int8["calibration_frames"] == 3 and int8["classes_present"] >= 2
    assert int8["status"] == PASSED and int8["label_agreement"] >= 0.99
    graph = onnx.load(str(loaded.graph_path("int8")))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "LayerNormalization", "Softmax"} <= ops
    # The float parts stay float: nothing feeds LayerNorm, Softmax or the centroid Conv from a
    # DequantizeLinear of an activation, and the checks pass on the QDQ graph.
    assert trt_problems(graph) == []
    check_graph(graph, loaded.meta.camera)
    # Damage to the INT8 graph is caught like damage to the FP32 one.
    path = loaded.graph_path("int8")
    data = path.read_bytes()
    try:
        path.write_bytes(data[:-10])
        with pytest.raises(BundleError, match=r"model_int8\.onnx: checksum mismatch"):
            load_bundle(int8_bundle.path)
    finally:
        path.write_bytes(data)


def test_segmenter_runs_the_int8_graph(int8_bundle):
    frames = synthetic_frames(int8_bundle.meta.camera, 2, seed=21)
    fp32 = Segmenter(int8_bundle, backend="onnxruntime", precision="fp32")
    int8 = Segmenter(int8_bundle, backend="onnxruntime", precision="int8", cpu_graph="plain")
    assert int8.describe()["model"].endswith(INT8_MODEL_FILE)
    assert int8.describe()["precision"] == "int8"
    counter = AgreementCounter()
    for frame in frames:
        a, b = int8.segment(frame), fp32.segment(frame)
        assert a.labels.dtype == np.uint8 and a.labels.shape == frame.shape[:2]
        assert not np.array_equal(a.confidence, b.confidence)  # really another graph
        counter.add(a.labels, b.labels)
    result = counter.result(0.9)
    assert result.classes_present >= 2 and result.status == PASSED


def test_int8_on_a_bundle_without_the_graph_is_a_clear_error(checkpoint, tmp_path):
    bundle = export_bundle(checkpoint, tmp_path / "b", ExportSettings(camera=CAMERA, frames=1,
                                                                      precision="fp32",
                                                                      engine="skip"))
    assert "fp16_vs_fp32" not in bundle.meta.validation
    with pytest.raises(BundleError, match=r"has no INT8 graph .* --int8"):
        Segmenter(bundle, backend="onnxruntime", precision="int8")
    with pytest.raises(BundleError, match="has no INT8 graph"):
        Segmenter(bundle, backend="auto", precision="int8")


def test_cli_summary_says_what_was_measured(checkpoint, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert export_main([str(checkpoint), "--camera-size", CAMERA, "--out", str(tmp_path / "b"),
                        "--frames", "1", "--engine", "skip"]) == 0
    line = next(r.getMessage() for r in caplog.records if "ready:" in r.getMessage())
    assert "parity vs PyTorch" in line and "classes present" in line and "FP16 vs FP32" in line
    assert "pixels differ" in line


def _qdq_model(zero_point, scale=(0.1,), zero_dtype=TensorProto.INT8):
    inits = [onnx.numpy_helper.from_array(np.asarray(scale, np.float32), "s")]
    inputs = ["x", "s"]
    if zero_point is not None:
        inits.append(helper.make_tensor("z", zero_dtype, [len(zero_point)], list(zero_point)))
        inputs.append("z")
    q_type = zero_dtype if zero_point is not None else TensorProto.UINT8
    nodes = [helper.make_node("QuantizeLinear", inputs, ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", *inputs[1:]], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 2])],
                              [helper.make_tensor_value_info("y", 1, [1, 2])], inits,
                              value_info=[helper.make_tensor_value_info("q", q_type, [1, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("zero", "scale", "dtype", "message"), [
    ((0,), (0.1,), TensorProto.INT8, None),
    ((3,), (0.1,), TensorProto.INT8, "non-zero zero point"),
    ((0,), (0.1,), TensorProto.UINT8, "zero point is UINT8"),
    (None, (0.1,), TensorProto.INT8, "no zero point, so the output is UINT8"),
    ((0, 0), (0.1, 0.2), TensorProto.INT8, "per-channel scales only on the DequantizeLinear"),
    ((0,), (-0.1,), TensorProto.INT8, "scales must be positive"),
])
def test_op_check_on_qdq_nodes(zero, scale, dtype, message):
    problems = trt_problems(_qdq_model(zero, scale, dtype))
    if message is None:
        assert problems == []
    else:
        assert any(message in p for p in problems), problems


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (tiny, few-step) ``uwstego train`` run on a folder of frames: its model.pt records
    its feature cache, and so its training frames."""
    root = tmp_path_factory.mktemp("train")
    images = root / "images"
    images.mkdir()
    for i, frame in enumerate(synthetic_frames(Size(96, 64), 6, seed=5)):
        cv2.imwrite(str(images / f"f{i:02d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    run_training([images], root / "out",
                 PipelineSettings(backbone="tiny_vit8", resolution=64, crop_type="full",
                                  knn_k=3),
                 TrainSettings(steps=2, batch_size=2, clusters=3, code_dim=8,
                               feature_samples=3, num_neighbors=2, checkpoint_every=2,
                               kmeans_samples=500), progress=False)
    return root / "out" / "model.pt"


def test_validation_defaults_to_the_training_frames(trained, tmp_path, caplog):
    bundle = export_bundle(trained, tmp_path / "b", ExportSettings(camera=CAMERA, frames=3,
                                                                   engine="skip"))
    parity = bundle.meta.validation["onnxruntime_cpu_vs_pytorch"]
    assert parity["frame_source"].startswith("3 of the model's training frames")
    assert parity["frames"] == 3 and parity["classes_present"] >= 1
    # Without its feature cache the export says so and falls back to synthetic frames.
    cache = Path(load_trained_model(trained).provenance["feature_cache"])
    moved = cache.with_name(cache.name + ".moved")
    cache.rename(moved)
    try:
        caplog.set_level(logging.WARNING)
        bundle = export_bundle(trained, tmp_path / "c", ExportSettings(camera=CAMERA, frames=1,
                                                                       engine="skip"))
    finally:
        moved.rename(cache)
    assert "training frames are unavailable" in caplog.text
    assert "synthetic" in bundle.meta.validation["onnxruntime_cpu_vs_pytorch"]["frame_source"]

