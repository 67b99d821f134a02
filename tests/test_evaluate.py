"""``uwstego evaluate``: mask reading, the crop geometry, whole-set scores and the report files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool
from tests.support.trained import tiny_model
from uwstego.enhance import Enhancer
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import save_trained_model
from uwstego.training.evaluate import evaluate, resize_center_crop
from uwstego.training.inference import segment, to_network_input
from uwstego.training.masks import SUIM_CLASSES, decode_suim, read_mask_kind
from uwstego.training.settings import EvalSettings

DATA = Path(os.environ.get("UWSTEGO_DATA",
                           Path(__file__).resolve().parents[2] / "shared/data/underwater"))
SUIM = DATA / "suim"


def _blocky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    small = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_suim_colours_decode_by_channel_bits(tmp_path):
    mask = np.zeros((2, 4, 3), np.uint8)
    for i, c in enumerate(SUIM_CLASSES[:4]):
        mask[0, i] = c.color
    for i, c in enumerate(SUIM_CLASSES[4:]):
        mask[1, i] = c.color
    mask[1, 3] = (200, 30, 240)  # an off-palette boundary colour: thresholded to reef (1,0,1)
    expected = np.array([[0, 1, 2, 3], [4, 5, 6, 5]])
    np.testing.assert_array_equal(decode_suim(mask), expected)
    _write_rgb(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_mask_kind(tmp_path / "m.png")[0], expected)
    cv2.imwrite(str(tmp_path / "i.png"), expected.astype(np.uint8))
    np.testing.assert_array_equal(read_mask_kind(tmp_path / "i.png")[0], expected)
    with pytest.raises(ValueError, match="one channel"):
        read_mask_kind(tmp_path / "m.png", kind="index")[0]
    with pytest.raises(ValueError, match="mask kind"):
        read_mask_kind(tmp_path / "m.png", kind="rgb")[0]


def test_resize_center_crop_geometry_is_shared_by_images_and_labels():
    labels = np.arange(6 * 9, dtype=np.uint8).reshape(6, 9)
    out = resize_center_crop(labels, 6, "nearest")
    np.testing.assert_array_equal(out, labels[:, 2:8])  # no resize, a centred 6x6
    up = resize_center_crop(labels, 12, "nearest")
    assert up.shape == (12, 12)
    # 12x18 after the resize; the crop starts at x = 3, i.e. source column 1.
    np.testing.assert_array_equal(up[::2, ::2], labels[:, 1:7])
    img = np.dstack([labels] * 3)
    assert resize_center_crop(img, 4, "area").shape == (4, 4, 3)


def _oracle_set(tmp_path: Path, model, n: int = 4, perm=(2, 0, 3, 1)):
    """Images 64x96 and full-size index masks equal to the model's own clusters, relabelled by
    ``perm`` inside the scored centre square and 'ignore' outside it."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    backbone, head = model.build_modules()
    for i in range(n):
        rgb = _blocky(rng, 64, 96)
        _write_rgb(images / f"f{i}.png", rgb)
        crop = resize_center_crop(Enhancer(model.enhancement).apply(rgb), 64, "nearest")
        pred, _ = segment(backbone, head, model.centroids, to_network_input([crop]))
        full = np.full((64, 96), 255, np.uint8)
        full[:, 16:80] = np.asarray(perm, np.uint8)[pred[0].numpy()]
        cv2.imwrite(str(masks / f"f{i}.png"), full)
    return images, masks


def test_masks_equal_to_relabelled_clusters_score_100(tmp_path):
    model = tiny_model(k=4)
    images, masks = _oracle_set(tmp_path, model)
    out = tmp_path / "report"
    report = evaluate(model, images, masks, EvalSettings(resolution=64, num_classes=4),
                      out_dir=out, progress=False)
    assert report.scores.accuracy == pytest.approx(100.0)
    assert report.scores.miou == pytest.approx(100.0)
    assert report.scores.pixels == 4 * 64 * 64  # only the centre square, ignore dropped
    assert (report.confusion.sum(axis=1) > 0).all()  # every cluster fires somewhere
    perm = (2, 0, 3, 1)
    assert [perm[k] for k in report.scores.assignment] == [0, 1, 2, 3]  # relabelling undone
    saved = json.loads((out / "scores.json").read_text())
    assert saved["scores"]["mIoU"] == pytest.approx(100.0)
    assert len(report.table().splitlines()) == 4 + 5
    png = cv2.imread(str(out / "confusion.png"))
    assert png is not None and png.shape[0] > 50

    flipped = evaluate(model, images, masks, EvalSettings(resolution=64, num_classes=4,
                                                          flip=True), progress=False)
    assert flipped.scores.pixels == report.scores.pixels
    assert 0.0 <= flipped.scores.accuracy <= 100.0


def test_bad_inputs_are_named(tmp_path):
    model = tiny_model()
    images, masks = _oracle_set(tmp_path, model, n=2)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        evaluate(model, images, masks, EvalSettings(resolution=60), progress=False)
    (masks / "f1.png").unlink()
    with pytest.raises(ValueError, match="have no mask"):
        evaluate(model, images, masks, EvalSettings(resolution=64), progress=False)
    with pytest.raises(ValueError, match="interpolation"):
        EvalSettings(interpolation="cubic")


@pytest.mark.skipif(not SUIM.is_dir(), reason="SUIM sample pairs not available")
def test_suim_sample_pairs(tmp_path):
    for name in sorted(os.listdir(SUIM / "masks_rgb")):
        np.testing.assert_array_equal(read_mask_kind(SUIM / "masks_rgb" / name)[0],
                                      read_mask_kind(SUIM / "masks_index" / name)[0])
    model = tiny_model(k=8)
    report = evaluate(model, SUIM / "images", SUIM / "masks_rgb", EvalSettings(resolution=64),
                      out_dir=tmp_path, progress=False)
    assert [c.name for c in report.classes] == [c.name for c in SUIM_CLASSES]
    assert report.images == 8 and report.scores.pixels == 8 * 64 * 64
    assert 0.0 <= report.scores.miou <= 100.0
    # PF and SR never occur: their IoU is NaN unless their matched cluster fires (then 0).
    for idx in (2, 7):
        iou = report.scores.per_class_iou[idx]
        assert np.isnan(iou) or iou == 0.0


def _random_set(tmp_path: Path, n_classes: int, n: int = 3, size=(64, 64)):
    """Blocky images and index masks using every one of ``n_classes`` classes."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(3)
    h, w = size
    for i in range(n):
        _write_rgb(images / f"f{i}.png", _blocky(rng, h, w))
        small = np.arange(16, dtype=np.uint8).reshape(4, 4) % n_classes
        cv2.imwrite(str(masks / f"f{i}.png"),
                    cv2.resize(rng.permutation(small), (w, h), interpolation=cv2.INTER_NEAREST))
    return images, masks


def test_fewer_clusters_than_classes_leaves_classes_unmatched(tmp_path):
    """Issue 21 item 1: 2 clusters for 4 classes crashed the table with an IndexError and
    listed clusters that do not exist."""
    model_path = save_trained_model(tmp_path / "run" / "model.pt", tiny_model(k=2))
    images, masks = _random_set(tmp_path, 4)
    out = tmp_path / "eval"
    outcome = run_tool("uwstego", "evaluate", model_path, "--images", images, "--masks", masks,
                       "--resolution", "64", "--out", out)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    table = (out / "per_class_iou.txt").read_text()
    assert table.count("(none)") == 2, table
    saved = json.loads((out / "scores.json").read_text())
    matched = saved["scores"]["assignment"]
    assert sorted(k for k in matched if k is not None) == [0, 1]
    assert matched.count(None) == 2
    assert saved["clusters"] == ["cluster_0", "cluster_1"]
    # Ground truth on rows: 4 classes x 2 clusters.
    assert np.asarray(saved["confusion"]).shape == (4, 2)
    assert saved["confusion_rows"] == "ground-truth class"
    assert cv2.imread(str(out / "confusion.png")) is not None
    assert "2 classes will match no cluster" in outcome.stderr


def test_class_count_is_explained_for_colour_and_index_masks(tmp_path):
    """Issue 21 item 11: the same masks as SUIM colours (8 classes) and as indices (largest + 1)
    score different class counts; the report says how many and why."""
    model = tiny_model(k=8)
    images, masks = _random_set(tmp_path, 6, n=2)  # indices 0..5: no robot, fish, seafloor
    rgb_masks = tmp_path / "masks_rgb"
    rgb_masks.mkdir()
    for p in masks.iterdir():
        index = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        _write_rgb(rgb_masks / p.name, np.asarray([c.color for c in SUIM_CLASSES],
                                                  np.uint8)[index])
    settings = EvalSettings(resolution=64)
    as_rgb = evaluate(model, images, rgb_masks, settings, progress=False)
    as_index = evaluate(model, images, masks, settings, out_dir=tmp_path / "eval",
                        progress=False)
    assert len(as_rgb.classes) == 8 and len(as_index.classes) == 6
    assert as_rgb.truth.present == as_index.truth.present == (0, 1, 2, 3, 4, 5)
    assert "encodes 8 colours" in as_rgb.truth.reason
    assert "never present 6 (fish), 7 (seafloor)" in as_rgb.truth.describe()
    assert "largest index is 5, so 6 classes" in as_index.truth.reason
    saved = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert saved["ground_truth"]["present"] == [0, 1, 2, 3, 4, 5]
    assert "6 classes are inferred" in saved["ground_truth"]["reason"]


def test_an_exported_bundle_is_scored_with_its_deployed_graph(tmp_path):
    """Issue 21 item 8: evaluate takes a bundle, runs the graph through edge.Segmenter (ONNX
    Runtime) and writes example overlays next to the scores."""
    bundle = make_tiny_bundle(tmp_path / "bundle", camera=(64, 48))
    segmenter = Segmenter(bundle, backend="onnxruntime")
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(5)
    perm = np.asarray([3, 0, 4, 1, 2], np.uint8)
    for i in range(3):
        rgb = _blocky(rng, 48, 64)
        _write_rgb(images / f"f{i}.png", rgb)
        segmenter.reset()
        cv2.imwrite(str(masks / f"f{i}.png"), perm[segmenter.segment(rgb).labels])
    out = tmp_path / "eval"
    outcome = run_tool("uwstego", "evaluate", bundle, "--images", images, "--masks", masks,
                       "--resolution", "48", "--num-classes", "5", "--out", out,
                       "--overlays", "2")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    saved = json.loads((out / "scores.json").read_text())
    assert saved["model_kind"] == "bundle"
    assert saved["scores"]["accuracy"] == pytest.approx(100.0)
    assert [int(perm[k]) for k in saved["scores"]["assignment"]] == [0, 1, 2, 3, 4]
    pictures = sorted((out / "overlays").iterdir())
    assert [p.name for p in pictures] == ["f0.png", "f2.png"]
    picture = cv2.imread(str(pictures[0]))
    assert picture.shape[1] == 3 * 48 + 3 * 4 + 140 and picture.shape[0] > 48
    # The prediction panel in matched colours equals the ground-truth panel.
    top = picture.shape[0] - 48
    np.testing.assert_array_equal(picture[top:, 52:100], picture[top:, 104:152])

    flip = run_tool("uwstego", "evaluate", bundle, "--images", images, "--masks", masks,
                    "--resolution", "48", "--flip")
    assert_one_line_error(flip, "--flip", "without --flip")
    with pytest.raises(FileNotFoundError, match=r"holds neither bundle.json .* nor model.pt"):
        evaluate(images, images, masks, EvalSettings(resolution=48), progress=False)
