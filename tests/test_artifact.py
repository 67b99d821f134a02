"""The trained-model file: round trip, self-contained backbone, and clear refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from tests.support.trained import tiny_model
from uwstego.classes import ClassInfo, default_classes
from uwstego.enhance import EnhanceSettings
from uwstego.training.artifact import (
    ModelFileError,
    load_trained_model,
    save_trained_model,
)


def test_round_trip_rebuilds_identical_modules(tmp_path):
    model = tiny_model(enhancement=EnhanceSettings(clahe=True))
    path = save_trained_model(tmp_path / "m" / "model.pt", model)
    loaded = load_trained_model(path)
    assert loaded.classes == model.classes and loaded.enhancement == model.enhancement
    assert loaded.head_config == model.head_config and loaded.resolution == 64
    np.testing.assert_array_equal(loaded.centroids, model.centroids)
    assert dict(loaded.provenance) == {"note": "test"}
    # The backbone weights travel in the file: the rebuilt network computes the same features.
    x = torch.randn(1, 3, 64, 64)
    b1, h1 = model.build_modules()
    b2, h2 = load_trained_model(tmp_path / "m").build_modules()
    torch.testing.assert_close(h2(b2(x)), h1(b1(x)), rtol=0, atol=0)
    assert not h2.training and not any(p.requires_grad for p in b2.parameters())
    assert [p.name for p in tmp_path.joinpath("m").iterdir()] == ["model.pt"]  # no temp left


def test_with_classes_and_validation():
    model = tiny_model(k=3)
    named = model.with_classes([ClassInfo(n, (1, 2, 3)) for n in ("sand", "water", "reef")])
    assert [c.name for c in named.classes] == ["sand", "water", "reef"]
    with pytest.raises(ValueError, match="2 class names for 3 centroids"):
        model.with_classes(default_classes(2))
    with pytest.raises(ValueError, match="unit rows"):
        dataclasses.replace(model, centroids=model.centroids * 2)
    with pytest.raises(ValueError, match=r"centroids must be \[K, 6\]"):
        dataclasses.replace(model, centroids=np.ones((3, 5), np.float32))


def test_refuses_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trained_model(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match=r"without model\.pt"):
        load_trained_model(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelFileError, match="not a readable uwstego model"):
        load_trained_model(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(ModelFileError, match="not a uwstego model file"):
        load_trained_model(foreign)
    good = save_trained_model(tmp_path / "good.pt", tiny_model())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"truncated\.pt"):
        load_trained_model(truncated)
    newer = tmp_path / "newer.pt"
    data = torch.load(good, weights_only=True)
    data["format_version"] = 99
    torch.save(data, newer)
    with pytest.raises(ModelFileError, match="version 99"):
        load_trained_model(newer)
