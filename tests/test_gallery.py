"""``uwstego clusters``: the gallery files, the names YAML, and naming the model."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.commands import run_tool
from tests.support.media import scene, write_video
from tests.support.tiny_export import make_tiny_model
from tests.support.trained import tiny_model
from uwstego.bundle import load_bundle
from uwstego.classes import ClassInfo, default_classes, load_classes_yaml, save_classes_yaml
from uwstego.export.pipeline import export_bundle
from uwstego.export.settings import ExportSettings
from uwstego.image_size import Size
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import load_trained_model, save_trained_model
from uwstego.training.calibration import calibrate_cosines, graph_confidences
from uwstego.training.data.crops import FIVE_CROP, make_crops
from uwstego.training.data.sources import FrameRef, ImageFolder, VideoFile
from uwstego.training.features import build_feature_cache
from uwstego.training.gallery import TILE, cache_views, source_views, write_gallery
from uwstego.training.gallery_frames import ExampleSource, frame_box
from uwstego.training.naming import apply_names
from uwstego.training.trust import model_trust

K = 4


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        small = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
        img = cv2.resize(small, (96, 64), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    return folder


def test_gallery_from_sources(images, tmp_path):
    model = tiny_model(k=K)
    out = tmp_path / "gallery"
    res = write_gallery(model, source_views(model, [ImageFolder(images)], max_images=5), out,
                        per_cluster=3, progress=False)
    assert res.coverage.sum() == pytest.approx(1.0)
    assert all(n <= 3 for n in res.examples)
    # Every cluster that takes a real share of the pixels shows at least one example.
    for share, n in zip(res.coverage, res.examples, strict=True):
        assert n >= 1 or share < 0.05
    grid = cv2.imread(str(res.png))
    assert grid.shape[0] == K * TILE
    page = res.html.read_text()
    assert all(f"cluster_{c}" in page for c in range(K))
    assert all((out / f"cluster_{c:02d}.png").is_file() for c in range(K))
    # Every example names its source file and links to its whole frame (issue 21 item 10).
    links = re.findall(r'<a href="(frames/[0-9a-f]+\.jpg)"', page)
    tiles = re.findall(r'<img src="(tiles/cluster_\d\d_\d\.png)"', page)
    captions = re.findall(r"<figcaption>([^<]+)<br>([^<]+)</figcaption>", page)
    assert len(links) == len(tiles) == len(captions) == sum(res.examples) > 0
    assert all((out / p).is_file() for p in links + tiles)
    assert {name for name, _ in captions} <= {f"{i}.png" for i in range(6)}
    frame = cv2.imread(str(out / links[0]))
    assert frame.shape == (64, 96, 3)  # the whole source frame, not the crop
    assert load_classes_yaml(res.classes_yaml, expected=K) == model.classes


def test_edited_names_survive_a_rerun_and_go_into_the_model(images, tmp_path):
    model = tiny_model(k=K)
    model_path = save_trained_model(tmp_path / "run" / "model.pt", model)
    out = tmp_path / "gallery"
    write_gallery(model, source_views(model, [ImageFolder(images)], 2), out, progress=False)
    names = [ClassInfo(n, (10 * i, 20, 30)) for i, n in enumerate(("water", "sand", "reef",
                                                                   "fish"))]
    save_classes_yaml(out / "classes.yaml", names)
    write_gallery(model, source_views(model, [ImageFolder(images)], 2), out, progress=False)
    assert load_classes_yaml(out / "classes.yaml") == tuple(names)  # not overwritten

    apply_names(model_path.parent, out / "classes.yaml")
    named = load_trained_model(model_path)
    assert [c.name for c in named.classes] == ["water", "sand", "reef", "fish"]
    np.testing.assert_array_equal(named.centroids, model.centroids)

    save_classes_yaml(tmp_path / "three.yaml", names[:3])
    with pytest.raises(ValueError, match="names 3 classes but the model has 4"):
        apply_names(model_path, tmp_path / "three.yaml")


def test_gallery_from_the_feature_cache(images, tmp_path):
    model = tiny_model(k=K)
    backbone, _ = model.build_modules()
    cache = build_feature_cache([images], backbone, tmp_path / "cache", resolution=64,
                                crop_type="full")
    res = write_gallery(model, cache_views(model, cache, max_images=6), tmp_path / "g",
                        per_cluster=2, progress=False)
    # The cache path and the source path see the same crops through the same model.
    again = write_gallery(model, source_views(model, [ImageFolder(images)], 6), tmp_path / "h",
                          per_cluster=2, progress=False)
    assert sum(res.examples) > 0
    assert res.coverage.sum() == pytest.approx(1.0)
    # Only the cache's float16 storage differs.
    np.testing.assert_allclose(res.coverage, again.coverage, atol=0.01)


def test_video_examples_give_frame_and_time(tmp_path):
    video = write_video(tmp_path / "dive.mp4", [scene(i, 64, 96) for i in range(4)], fps=10.0)
    model = tiny_model(k=K)
    res = write_gallery(model, source_views(model, [VideoFile(video)], 4), tmp_path / "g",
                        per_cluster=2, progress=False)
    captions = re.findall(r"<figcaption>([^<]+)<br>([^<]+)</figcaption>",
                          res.html.read_text())
    assert captions and all(name == "dive.mp4" for name, _ in captions)
    assert all(re.fullmatch(r"frame (\d) \(0\.\d0 s\)", when) for _, when in captions), captions


def _facts_page(tmp_path, images, provenance):
    model = dataclasses.replace(tiny_model(k=K), provenance=provenance)
    return write_gallery(model, source_views(model, [ImageFolder(images)], 2),
                         tmp_path / "g", per_cluster=1, progress=False).html.read_text()


def test_gallery_shows_trust_facts_and_warns_on_random_weights(images, tmp_path):
    """Issue 21 item 2: the gallery says what the weights are; random ones get a banner."""
    train = {"train_settings": {"steps": 20}, "images": 6,
             "sources": [{"kind": "video", "path": "/d/dive.mp4", "stride": 1}]}
    page = _facts_page(tmp_path, images, {"random_weights": True, "weights_file": None, **train})
    assert "RANDOM WEIGHTS" in page and 'class="banner"' in page
    assert "<th>training steps</th><td>20</td>" in page
    assert f"<th>clusters</th><td>{K}</td>" in page
    assert "<th>backbone</th><td>tiny_vit8</td>" in page
    assert "<th>training data</th><td>6 crops from video /d/dive.mp4</td>" in page
    # "official" is the published file of the model's own backbone (tiny_vit8 has none).
    official = model_trust({"random_weights": False,
                            "weights_file": "/w/dino_deitsmall8_300ep_pretrain.pth", **train},
                           "dino_vits8", K)
    assert official.weights == "official" and not official.random
    own = _facts_page(tmp_path, images, {"random_weights": False,
                                         "weights_file": "/w/my_dino.pth", **train})
    assert "<td>self-pretrained</td>" in own and 'class="banner"' not in own


MERGE_NAMES = ("water", "sand", "water", "reef")  # clusters 0 and 2 merge


def _names_yaml(path):
    return save_classes_yaml(path, [ClassInfo(n, (40 * i, 90, 200 - 40 * i))
                                    for i, n in enumerate(MERGE_NAMES)])


def _export(model_path, out):
    return export_bundle(model_path, out, ExportSettings(camera=Size(64, 48),
                                                         network=Size(64, 48), frames=2,
                                                         engine="skip"))


def test_equal_names_merge_clusters_in_the_model_the_gallery_and_the_bundle(images, tmp_path):
    """Issue 21 item 10: two clusters named alike become one class everywhere; --apply
    regenerates the gallery."""
    model = make_tiny_model(k=4)
    run = tmp_path / "run"
    model_path = save_trained_model(run / "model.pt", model)
    before = _export(model_path, tmp_path / "before")
    names = _names_yaml(tmp_path / "names.yaml")
    outcome = run_tool("uwstego", "clusters", run, images, "--apply", names, "--max-images", "3",
                       "--per-cluster", "2")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    merged = load_trained_model(model_path)
    assert [c.name for c in merged.classes] == ["water", "sand", "reef"]
    assert merged.cluster_classes == (0, 1, 0, 2)
    assert [c.name for c in merged.cluster_names] == list(MERGE_NAMES)
    np.testing.assert_array_equal(merged.centroids, model.centroids)
    page = (run / "gallery" / "index.html").read_text()  # regenerated by --apply
    assert "merged with #2" in page and "merged with #0" in page
    assert [c.name for c in load_classes_yaml(run / "gallery" / "classes.yaml",
                                              repeats=True)] == list(MERGE_NAMES)

    after = _export(model_path, tmp_path / "after")
    doc = json.loads((after.path / "bundle.json").read_text())
    assert [c["name"] for c in doc["classes"]] == ["water", "sand", "reef"]
    assert doc["num_classes"] == 3
    table = np.asarray(merged.cluster_classes, np.uint8)
    old, new = Segmenter(before, backend="onnxruntime"), Segmenter(after, backend="onnxruntime")
    seen = set()
    for seed in range(3):
        frame = scene(seed, 48, 64)
        labels = new.segment(frame).labels
        np.testing.assert_array_equal(labels, table[old.segment(frame).labels])
        seen |= set(np.unique(labels).tolist())
    assert seen <= {0, 1, 2} and len(seen) > 1


def test_merging_a_calibrated_model_recalibrates_per_class(images, tmp_path):
    model = make_tiny_model(k=4, calibrated=True)
    backbone, head = model.build_modules()
    cache = build_feature_cache([images], backbone, tmp_path / "cache", resolution=64,
                                crop_type="full")
    model = dataclasses.replace(model, provenance={**model.provenance,
                                                   "feature_cache": str(cache.root),
                                                   "train_settings": {"kmeans_samples": 500,
                                                                      "seed": 0}})
    model_path = save_trained_model(tmp_path / "run" / "model.pt", model)
    merged = apply_names(model_path, _names_yaml(tmp_path / "names.yaml"))
    cos, clusters = graph_confidences(head, cache, model.centroids, "cpu", 500, 0, upsample=8)
    per_cluster = calibrate_cosines(cos, clusters, 4, model.calibration.quantile)
    assert merged.calibration.num_clusters == 3
    assert merged.calibration.counts == (per_cluster.counts[0] + per_cluster.counts[2],
                                         per_cluster.counts[1], per_cluster.counts[3])
    union = cos[(clusters == 0) | (clusters == 2)]
    assert merged.calibration.thresholds[0] == pytest.approx(
        np.quantile(union, model.calibration.quantile))
    bundle = load_bundle(_export(model_path, tmp_path / "bundle").path)
    assert bundle.meta.novelty.num_clusters == 3 == bundle.meta.num_classes

    # Distinct names again: one class per cluster, calibration per cluster again.
    save_classes_yaml(tmp_path / "plain.yaml", default_classes(4))
    plain = apply_names(model_path, tmp_path / "plain.yaml")
    assert plain.cluster_classes == (0, 1, 2, 3) and plain.calibration == per_cluster

    # Without the cache a merge is refused with the reason, and the model is unchanged.
    shutil.rmtree(cache.root)
    with pytest.raises(FileNotFoundError, match=r"feature cache .* which is gone"):
        apply_names(model_path, tmp_path / "names.yaml")
    assert load_trained_model(model_path).cluster_classes == (0, 1, 2, 3)


@pytest.mark.parametrize("crop", ["full", "top_left", "bottom_right", "center"])
def test_full_frame_box_is_where_the_tile_was_cut(crop):
    """The outline on the linked frame covers the pixels the tile shows."""
    h, w, res = 120, 200, 64
    ys, xs = np.mgrid[0:h, 0:w]
    frame = np.dstack([ys, xs, np.zeros_like(ys)]).astype(np.float32)  # pixel = its position
    names = {"full": "full"}.get(crop, "five")
    crops = make_crops(frame, names, res)
    picked = crops[0 if crop == "full" else FIVE_CROP.index(crop)]
    top, left, size = 10, 20, 32
    x0, y0, x1, y1 = frame_box((h, w), ExampleSource(FrameRef("image", "f.png"), crop, top,
                                                     left, size), res)
    tile = picked[top:top + size, left:left + size]
    scale = (y1 - y0) / size
    assert tile[..., 0].min() == pytest.approx(y0, abs=2 * scale)
    assert tile[..., 0].max() == pytest.approx(y1 - 1, abs=2 * scale)
    assert tile[..., 1].min() == pytest.approx(x0, abs=2 * scale)
    assert tile[..., 1].max() == pytest.approx(x1 - 1, abs=2 * scale)
