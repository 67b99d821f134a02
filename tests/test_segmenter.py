from __future__ import annotations

import dataclasses
import importlib.util

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests.support.bundles import make_tiny_bundle
from uwstego.backends import BackendUnavailable, create_backend
from uwstego.bundle import BundleError, load_bundle, write_bundle
from uwstego.enhance import Enhancer
from uwstego.image_size import Size
from uwstego.segmenter import TIMING_KEYS, Segmenter

CAMERA = (64, 48)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", camera=CAMERA))


def _frame(seed: int, size=CAMERA) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # a blue-green cast with structure, like an underwater frame
    base = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    img = cv2.resize(base, size, interpolation=cv2.INTER_LINEAR)
    img[..., 0] //= 3
    return img


def test_segment_matches_the_graph_run_directly(bundle):
    seg = Segmenter(bundle, backend="onnxruntime")
    frame = _frame(0)
    out = seg.segment(frame)
    image, params = Enhancer(bundle.meta.enhancement).host_stage(frame)
    session = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    labels, conf = session.run(["labels", "confidence"],
                               {"image": image[None], "enhance": params[None]})
    assert out.labels.dtype == np.uint8 and out.labels.shape == frame.shape[:2]
    assert out.confidence.dtype == np.float32 and out.confidence.shape == frame.shape[:2]
    assert np.array_equal(out.labels, labels[0].astype(np.uint8))
    np.testing.assert_allclose(out.confidence, conf[0], rtol=1e-5, atol=1e-6)
    assert out.backend == "onnxruntime" and not out.resized
    assert set(out.timings_ms) == set(TIMING_KEYS)
    assert all(v >= 0 for v in out.timings_ms.values())
    assert out.timings_ms["total"] >= out.timings_ms["inference"]


def test_bgr_frames_are_converted(bundle):
    frame = _frame(1)
    rgb = Segmenter(bundle, backend="onnxruntime").segment(frame)
    bgr = Segmenter(bundle, backend="onnxruntime").segment(frame[..., ::-1], bgr=True)
    assert np.array_equal(rgb.labels, bgr.labels)
    assert np.array_equal(rgb.confidence, bgr.confidence)


def test_other_sizes_are_resized_in_and_labels_resized_back(bundle):
    big = _frame(2, size=(100, 70))
    out = Segmenter(bundle, backend="onnxruntime").segment(big)
    assert out.resized and out.labels.shape == (70, 100) and out.confidence.shape == (70, 100)
    at_camera = cv2.resize(big, CAMERA, interpolation=cv2.INTER_AREA)
    ref = Segmenter(bundle, backend="onnxruntime").segment(at_camera)
    expected = cv2.resize(ref.labels, (100, 70), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(out.labels, expected)
    assert set(np.unique(out.labels)) <= set(np.unique(ref.labels))


def test_reset_forgets_the_stream_state(bundle):
    a, b = _frame(3), _frame(4)[..., ::-1].copy()  # very different colour casts
    fresh_seg = Segmenter(bundle, backend="onnxruntime")
    fresh = fresh_seg.segment(b)
    seg = Segmenter(bundle, backend="onnxruntime")
    seg.segment(a)
    carried = seg.enhancer.frame_params(b)
    assert not np.allclose(carried, Enhancer(bundle.meta.enhancement).frame_params(b))
    seg.reset()
    after_reset = seg.segment(b)
    assert np.array_equal(after_reset.labels, fresh.labels)
    assert np.array_equal(after_reset.confidence, fresh.confidence)


def test_bad_frames_are_refused_with_a_reason(bundle):
    seg = Segmenter(bundle, backend="onnxruntime")
    with pytest.raises(ValueError, match="grey"):
        seg.segment(np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        seg.segment(np.zeros((48, 64, 3), np.float32))


def test_unknown_backend_name_is_refused(bundle):
    with pytest.raises(ValueError, match="expected one of"):
        Segmenter(bundle, backend="tflite")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="this onnxruntime has CUDA")
def test_explicit_cuda_backend_without_cuda_says_why(bundle):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        Segmenter(bundle, backend="onnxruntime-cuda")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT present")
def test_auto_falls_back_to_onnxruntime_and_reports_why(bundle):
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        create_backend("tensorrt", bundle)
    seg = Segmenter(bundle, backend="auto")
    info = seg.describe()
    assert seg.backend_name.startswith("onnxruntime")
    assert "tensorrt" in info["skipped"] and info["requested"] == "auto"
    assert "CPUExecutionProvider" in info["providers"]


def test_graph_that_does_not_match_the_bundle_camera_is_refused(bundle, tmp_path):
    meta = dataclasses.replace(bundle.meta, camera=Size(CAMERA[0] * 2, CAMERA[1] * 2))
    wrong = write_bundle(tmp_path / "wrong", meta, {"model.onnx": bundle.model_path})
    with pytest.raises(BundleError, match="input 'image' has shape"):
        Segmenter(wrong, backend="onnxruntime")
