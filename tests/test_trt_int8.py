"""Real TensorRT: the bundle's INT8 QDQ graph built with explicit quantisation and run.

Skipped where tensorrt or pycuda is not installed or no CUDA device is visible (as
tests/test_trt_engine.py); on those machines the TensorRT INT8 path is untested.
"""

from __future__ import annotations

import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU hosts and Jetsons)")
cuda = pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install pycuda)")
pytest.importorskip("torch", reason="the INT8 graph is exported here (workstation)")

from edge.agreement import PASSED  # noqa: E402
from edge.trt.check import check_engine  # noqa: E402
from edge.trt.frames import synthetic_frames  # noqa: E402
from export.pipeline import export_bundle  # noqa: E402
from tests.support.tiny_export import make_tiny_model  # noqa: E402
from training.artifact import save_trained_model  # noqa: E402


def _has_gpu() -> bool:
    try:
        cuda.init()
        return cuda.Device.count() > 0
    except cuda.Error:
        return False


pytestmark = pytest.mark.skipif(not _has_gpu(), reason="no CUDA device visible")


def test_int8_engine_from_the_qdq_graph(tmp_path):
    checkpoint = save_trained_model(tmp_path / "model.pt", make_tiny_model(seed=3, k=5))
    bundle = export_bundle(checkpoint, "96x64", None, tmp_path / "b", num_frames=2, int8=True,
                           calibration_frames=3, engine="skip")
    report = check_engine(bundle, synthetic_frames(bundle.meta.camera, 2, seed=9),
                          precision="int8", repeats=3, warmup=1)
    assert report["labels"]["classes_present"] >= 2
    assert report["labels"]["status"] == PASSED, report["labels"]["description"]
