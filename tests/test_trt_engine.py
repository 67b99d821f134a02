"""Real TensorRT: build, cache, reload, rebuild and run an engine (GPU hosts and Jetsons only).

Skipped where tensorrt or pycuda is not installed or no CUDA device is visible; on those
machines the TensorRT path is untested (README support table).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU hosts and Jetsons)")
cuda = pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install pycuda)")

from tests.support.bundles import make_tiny_bundle  # noqa: E402
from uwstego.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from uwstego.backends.tensorrt import TensorRTBackend  # noqa: E402
from uwstego.bundle import load_bundle  # noqa: E402
from uwstego.sample_frames import host_stage, synthetic_frames  # noqa: E402
from uwstego.trt.cache import is_stale, read_sidecar  # noqa: E402
from uwstego.trt.check import check_engine  # noqa: E402
from uwstego.trt.engine import ensure_engine, system_key  # noqa: E402

CAMERA = (96, 64)


def _has_gpu() -> bool:
    try:
        cuda.init()
        return cuda.Device.count() > 0
    except cuda.Error:
        return False


pytestmark = pytest.mark.skipif(not _has_gpu(), reason="no CUDA device visible")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("trt") / "b", camera=CAMERA))


def test_engine_is_built_once_then_reused(bundle, caplog):
    caplog.set_level(logging.INFO)
    plan = ensure_engine(bundle, precision="fp32")
    assert plan.parent == bundle.engine_dir and is_stale(plan, system_key(bundle, "fp32")) is None
    mtime = plan.stat().st_mtime_ns
    assert ensure_engine(bundle, precision="fp32") == plan
    assert plan.stat().st_mtime_ns == mtime and "matches" in caplog.text


def test_truncated_plan_is_rebuilt_with_the_reason(bundle, caplog):
    plan = ensure_engine(bundle, precision="fp32")
    plan.write_bytes(plan.read_bytes()[:100])
    caplog.set_level(logging.INFO)
    rebuilt = ensure_engine(bundle, precision="fp32")
    assert "changed since it was built" in caplog.text
    assert is_stale(rebuilt, system_key(bundle, "fp32")) is None


@pytest.mark.parametrize(("precision", "min_agreement"), [("fp32", 0.995), ("fp16", 0.98)])
def test_engine_agrees_with_onnxruntime(bundle, precision, min_agreement):
    engine = TensorRTBackend(bundle, precision=precision)
    try:
        assert engine.io["labels"]["dtype"] == np.uint8 and not engine.io["labels"]["is_input"]
        reference = OnnxRuntimeBackend(bundle, device="cpu")
        agree = pixels = 0
        frames = synthetic_frames(bundle.meta.camera, 3, seed=5)
        for image, params in host_stage(frames, bundle.meta.enhancement):
            labels, confidence = engine.run(image, params)
            ref_labels, ref_confidence = reference.run(image, params)
            assert labels.dtype == np.uint8 and confidence.dtype == np.float32
            assert labels.shape == (CAMERA[1], CAMERA[0])
            agree += int((labels == ref_labels).sum())
            pixels += labels.size
            assert np.abs(confidence - ref_confidence).mean() < 0.01
        assert agree / pixels >= min_agreement
        assert engine.describe()["cache_key"]["precision"] == precision
    finally:
        engine.close()


def test_check_engine_records_agreement_and_latency(bundle):
    frames = synthetic_frames(bundle.meta.camera, 2)
    report = check_engine(bundle, frames, precision="fp16", repeats=5, warmup=1)
    assert report["latency_ms"]["runs"] == 5 and report["label_agreement"] > 0.9
    plan = ensure_engine(bundle, precision="fp16")
    assert read_sidecar(plan)["check"]["frames"] == 2


def test_int8_engine_from_the_qdq_graph(tmp_path):
    """The bundle's INT8 QDQ graph built with explicit quantisation, checked against ORT."""
    pytest.importorskip("torch", reason="the INT8 graph is exported here (workstation)")
    from tests.support.tiny_export import make_tiny_model
    from uwstego.agreement import PASSED
    from uwstego.export.pipeline import export_bundle
    from uwstego.export.settings import ExportSettings
    from uwstego.training.artifact import save_trained_model

    checkpoint = save_trained_model(tmp_path / "model.pt", make_tiny_model(seed=3, k=5))
    bundle = export_bundle(checkpoint, tmp_path / "b", ExportSettings(camera="96x64", frames=2,
                                                                      int8=True,
                                                                      calibration_frames=3,
                                                                      engine="skip"))
    report = check_engine(bundle, synthetic_frames(bundle.meta.camera, 2, seed=9),
                          precision="int8", repeats=3, warmup=1)
    assert report["labels"]["classes_present"] >= 2
    assert report["labels"]["status"] == PASSED, report["labels"]["description"]
