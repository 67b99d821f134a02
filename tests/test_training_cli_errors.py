"""``uwstego evaluate`` and ``uwstego clusters`` from the command line: photographs are refused
as masks, and the gallery's --apply command works from any folder."""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.commands import assert_one_line_error, run_tool, snapshot
from tests.support.media import scene, write_image
from tests.support.trained import tiny_model
from uwstego.training.artifact import load_trained_model, save_trained_model

K = 4


@pytest.fixture()
def model_path(tmp_path: Path) -> Path:
    return save_trained_model(tmp_path / "run" / "model.pt", tiny_model(k=K))


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    for i in range(3):
        write_image(tmp_path / "photos" / f"{i}.jpg", scene(i, 64, 80))
    return tmp_path / "photos"


@pytest.mark.parametrize("kind, needle", [
    ("auto", "does not look like a SUIM colour mask"),
    ("index", "does not look like an index mask"),
])
def test_evaluate_refuses_photographs_as_masks(tmp_path, model_path, photos, kind, needle):
    masks = photos
    if kind == "index":  # grey photographs: one channel, as index masks are
        import cv2

        masks = tmp_path / "grey"
        masks.mkdir()
        for p in photos.iterdir():
            cv2.imwrite(str(masks / f"{p.stem}.png"), cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
    before = snapshot(tmp_path)
    outcome = run_tool("uwstego", "evaluate", model_path, "--images", photos, "--masks", masks,
                       "--mask-kind", kind, "--resolution", "64", "--out", tmp_path / "eval")
    line = assert_one_line_error(outcome, needle, "(a photograph?)",
                                 "masks must be index PNGs or SUIM colour masks")
    assert str(masks) in line
    assert snapshot(tmp_path) == before


def test_gallery_apply_command_works_from_another_folder(tmp_path, model_path, photos):
    made = run_tool("uwstego", "clusters", "run", "photos", "--out", "run/gallery",
                    "--per-cluster", "2", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    gallery = tmp_path / "run" / "gallery"
    page = html.unescape((gallery / "index.html").read_text())
    command = shlex.split(re.search(r"<code>(uwstego clusters .*?)</code>", page).group(1))
    yaml_path = gallery / "classes.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("cluster_0", "sand"))
    # As the page suggests: from the gallery folder (or anywhere else).
    applied = run_tool(*command, cwd=gallery)
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert load_trained_model(model_path).classes[0].name == "sand"


def test_apply_with_a_names_file_that_is_not_there_is_one_line(tmp_path, model_path):
    before = snapshot(tmp_path)
    outcome = run_tool("uwstego", "clusters", model_path, "--apply", "classes.yaml",
                       cwd=model_path.parent)
    assert_one_line_error(outcome, "names file classes.yaml not found",
                          f"read from the current folder, {model_path.parent}",
                          "index.html gives the --apply command with full paths")
    assert snapshot(tmp_path) == before
    assert np.array_equal(load_trained_model(model_path).centroids, tiny_model(k=K).centroids)
