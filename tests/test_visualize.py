from __future__ import annotations

import numpy as np
import pytest

from uwstego.classes import default_classes
from uwstego.visualize import UNKNOWN_COLOR, colorize, coverage, legend, overlay, palette

CLASSES = default_classes(5)


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(1)
    lab = rng.integers(0, len(CLASSES), size=(24, 32), dtype=np.uint8)
    lab[0, :4] = 255  # "ignore"
    return lab


def test_palette_holds_class_colours_and_unknown_elsewhere():
    lut = palette(CLASSES)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    for i, c in enumerate(CLASSES):
        assert tuple(lut[i]) == c.color
    assert (lut[len(CLASSES):] == UNKNOWN_COLOR).all()


def test_colorize_maps_every_pixel_to_its_class_colour(labels):
    img = colorize(labels, palette(CLASSES))
    assert img.shape == (*labels.shape, 3) and img.dtype == np.uint8
    for i, c in enumerate(CLASSES):
        assert (img[labels == i] == c.color).all()
    assert (img[labels == 255] == UNKNOWN_COLOR).all()


def test_colorize_equals_the_table_gather_for_every_id_and_any_layout():
    lut = np.random.default_rng(4).integers(0, 256, size=(256, 3), dtype=np.uint8)
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for labels in (ids, ids.T, ids[::2, 1::3], np.zeros((1, 1), np.uint8)):
        img = colorize(labels, lut)
        assert img.flags.c_contiguous and img.dtype == np.uint8
        np.testing.assert_array_equal(img, lut[labels])


def test_colorize_rejects_non_label_arrays():
    with pytest.raises(ValueError, match="uint8 HxW"):
        colorize(np.zeros((4, 4), np.int32), palette(CLASSES))
    with pytest.raises(ValueError, match="uint8 HxW"):
        colorize(np.zeros((4, 4, 3), np.uint8), palette(CLASSES))
    with pytest.raises(ValueError, match="256x3 uint8 palette"):
        colorize(np.zeros((4, 4), np.uint8), palette(CLASSES)[:5])


def test_overlay_alpha_blends_between_frame_and_colours(labels):
    lut = palette(CLASSES)
    frame = np.random.default_rng(2).integers(0, 256, size=(*labels.shape, 3), dtype=np.uint8)
    colors = colorize(labels, lut)
    assert np.array_equal(overlay(frame, labels, lut, alpha=0.0), frame)
    assert np.array_equal(overlay(frame, labels, lut, alpha=1.0), colors)
    half = overlay(frame, labels, lut, alpha=0.5).astype(int)
    expected = (frame.astype(int) + colors.astype(int)) / 2
    assert np.abs(half - expected).max() <= 1


def test_overlay_rejects_bad_alpha_and_mismatched_frames(labels):
    lut = palette(CLASSES)
    frame = np.zeros((*labels.shape, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        overlay(frame, labels, lut, alpha=1.5)
    with pytest.raises(ValueError, match="does not match"):
        overlay(frame[:-1], labels, lut)


def test_coverage_counts_fractions_per_class_and_skips_unknown(labels):
    cov = coverage(labels, len(CLASSES))
    assert cov.shape == (len(CLASSES),) and cov.dtype == np.float32
    for i in range(len(CLASSES)):
        assert cov[i] == pytest.approx(np.count_nonzero(labels == i) / labels.size)
    assert cov.sum() == pytest.approx(1.0 - 4 / labels.size)


def test_legend_draws_one_swatch_row_per_class():
    fractions = [0.1, 0.2, 0.3, 0.15, 0.25]
    img = legend(CLASSES, fractions, row_height=20, width=200)
    assert img.shape == (20 * len(CLASSES), 200, 3)
    for i, c in enumerate(CLASSES):
        assert tuple(img[i * 20 + 10, 10]) == c.color
        # the text area of each row holds dark (text) pixels
        assert (img[i * 20:(i + 1) * 20, 24:].min(axis=2) < 128).any()
    with pytest.raises(ValueError, match="coverage values"):
        legend(CLASSES, fractions[:2])
