"""Novelty: calibration, the graph's novelty output and unknown label, through the Segmenter."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.bundles import make_tiny_bundle
from tests.support.tiny_export import make_tiny_model
from uwstego.bundle import load_bundle
from uwstego.contract import GRAPH_NOVELTY, UNKNOWN_LABEL
from uwstego.novelty import (
    KNOT_COUNT,
    NoveltyCalibration,
    describe,
    novelty_map,
    unknown_mask,
)
from uwstego.sample_frames import synthetic_frames
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import load_trained_model, save_trained_model
from uwstego.training.calibration import calibrate


def _clustered_codes(seed: int = 0, k: int = 3, n: int = 3000, dim: int = 8):
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(k, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    codes = centroids[rng.integers(0, k, n)] * 3 + rng.normal(size=(n, dim))
    return codes.astype(np.float32), centroids.astype(np.float32)


def _best(codes, centroids):
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    cos = unit @ centroids.T
    return cos.max(axis=1), cos.argmax(axis=1)


def test_thresholds_monotone_in_the_quantile():
    codes, centroids = _clustered_codes()
    rows = [calibrate(codes, centroids, q).thresholds for q in (0.001, 0.01, 0.05, 0.2, 0.4)]
    assert (np.diff(np.asarray(rows), axis=0) > 0).all()
    cal = calibrate(codes, centroids, 0.01)
    lines = describe(cal, ["a", "b", "c"])  # what `uwstego clusters` prints
    assert len(lines) == 4 and "0.01 quantile" in lines[0] and lines[1].split()[0] == "a"
    conf, lab = _best(codes, centroids)
    # About the quantile's share of the training codes is unknown, per cluster.
    for k in range(3):
        rate = unknown_mask(conf[lab == k], lab[lab == k], cal).mean()
        assert 0.0 < rate <= 0.02, (k, rate)


def test_novelty_is_0_on_typical_and_1_beyond_every_training_code():
    codes, centroids = _clustered_codes(seed=1)
    cal = calibrate(codes, centroids)
    conf, lab = _best(codes, centroids)
    nov = novelty_map(conf, lab, cal)
    assert nov.min() >= 0.0 and nov.max() <= 1.0
    medians = np.asarray([row[-1] for row in cal.knots])
    typical = conf >= medians[lab]
    assert typical.mean() > 0.45 and (nov[typical] == 0.0).all()
    # Half the novelty range lies in the least similar half of each cluster: mean about 0.25.
    assert 0.15 < nov.mean() < 0.35
    beyond = np.asarray([row[0] for row in cal.knots]) - 0.05
    assert (novelty_map(beyond, np.arange(3), cal) == 1.0).all()
    # Knot j reads 1 - j / (KNOT_COUNT - 1).
    knots = cal.knot_array()
    for j in (0, 4, KNOT_COUNT - 1):
        got = novelty_map(knots[:, j], np.arange(3), cal)
        np.testing.assert_allclose(got, 1 - j / (KNOT_COUNT - 1), atol=1e-3)


def test_calibration_refuses_bad_input():
    codes, centroids = _clustered_codes()
    with pytest.raises(ValueError, match="quantile"):
        calibrate(codes, centroids, 0.7)
    cal = calibrate(codes, centroids)
    data = cal.to_dict()
    data["knots"] = [list(reversed(r)) for r in data["knots"]]
    with pytest.raises(ValueError, match="non-decreasing"):
        NoveltyCalibration.from_dict(data)


def test_model_file_round_trip_and_old_files(tmp_path):
    model = make_tiny_model(k=4, calibrated=True)
    back = load_trained_model(save_trained_model(tmp_path / "model.pt", model))
    assert back.calibration == model.calibration
    old = make_tiny_model(k=4)
    assert load_trained_model(save_trained_model(tmp_path / "old.pt", old)).calibration is None


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("novelty")
    return {name: make_tiny_bundle(root / name, camera=(64, 48), k=5, **kw)
            for name, kw in (("plain", {}), ("novelty", {"novelty": True}),
                             ("unknown", {"novelty": True, "unknown": True}))}


def test_bundle_carries_calibration_to_the_segmenter(bundles, tmp_path):
    model = make_tiny_model(k=5, calibrated=True)
    bundle = load_bundle(bundles["novelty"])
    assert bundle.meta.novelty == model.calibration
    assert not bundle.meta.unknown_label
    assert GRAPH_NOVELTY in bundle.meta.to_dict()["model"]["outputs"]
    parity = bundle.meta.validation["onnxruntime_cpu_vs_pytorch"]
    assert parity["graph_novelty_max_abs"] < 1e-3
    assert load_bundle(bundles["plain"]).meta.novelty is None
    frames = synthetic_frames(bundle.meta.camera, 3, seed=5)
    marked = 0
    seg = {name: Segmenter(path, backend="onnxruntime") for name, path in bundles.items()}
    for frame in frames:
        out = {name: s.segment(frame) for name, s in seg.items()}
        assert out["plain"].novelty is None
        nov = out["novelty"].novelty
        assert nov.dtype == np.float32 and nov.shape == frame.shape[:2]
        assert nov.min() >= 0.0 and nov.max() <= 1.0
        # The graph computes the numpy definition.
        np.testing.assert_allclose(
            nov, novelty_map(out["novelty"].confidence, out["novelty"].labels, model.calibration),
            atol=1e-4)
        # Labels are bit-identical without the unknown option ...
        np.testing.assert_array_equal(out["novelty"].labels, out["plain"].labels)
        # ... and with it, 255 exactly where the cosine is below the cluster's threshold.
        mask = unknown_mask(out["novelty"].confidence, out["novelty"].labels, model.calibration)
        marked += int(mask.sum())
        expected = np.where(mask, UNKNOWN_LABEL, out["novelty"].labels)
        np.testing.assert_array_equal(out["unknown"].labels, expected)
        np.testing.assert_array_equal(out["unknown"].novelty, nov)
    assert marked > 0  # the unknown case was exercised
    # A resized frame's novelty follows the frame size.
    big = np.concatenate([frames[0], frames[0]], axis=1)
    assert seg["novelty"].segment(big).novelty.shape == big.shape[:2]
    for s in seg.values():
        s.close()


def test_unknown_label_needs_a_calibrated_model(tmp_path):
    from uwstego.export.pipeline import ExportError, export_bundle
    from uwstego.export.settings import ExportSettings

    checkpoint = save_trained_model(tmp_path / "model.pt", make_tiny_model(k=3))
    with pytest.raises(ExportError, match="no novelty calibration"):
        export_bundle(checkpoint, tmp_path / "b", ExportSettings(camera="64x48", engine="skip",
                                                                 unknown_label=True))


def test_novelty_graphs_pass_the_tensorrt_op_check(bundles):
    import onnx

    from uwstego.export.opcheck import io_problems, trt_problems

    for name in ("novelty", "unknown"):
        bundle = load_bundle(bundles[name])
        graph = onnx.load(str(bundle.model_path))
        ops = {n.op_type for n in graph.graph.node}
        assert {"Gather", "Clip", "ReduceSum"} <= ops
        assert ("Where" in ops) == (name == "unknown")
        assert [o.name for o in graph.graph.output][-1] == GRAPH_NOVELTY
        assert trt_problems(graph) == [] and io_problems(graph, bundle.meta.camera) == []
