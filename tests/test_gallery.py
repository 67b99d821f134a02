"""``uwstego clusters``: the gallery files, the names YAML, and naming the model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from edge.classes import ClassInfo, load_classes_yaml, save_classes_yaml
from tests.support.trained import tiny_model
from training.artifact import load_trained_model, save_trained_model
from training.data.sources import ImageFolder
from training.features import build_feature_cache
from training.gallery import TILE, apply_names, cache_views, source_views, write_gallery

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
    assert all(f"cluster_{c:02d}.png" in page and f"cluster_{c}" in page for c in range(K))
    assert all((out / f"cluster_{c:02d}.png").is_file() for c in range(K))
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
