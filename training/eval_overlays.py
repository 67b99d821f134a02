"""Example pictures of an evaluation: image | prediction | ground truth, one PNG per image.

The prediction is drawn in the colours of the ground-truth classes its clusters were matched to
(the whole-set Hungarian matching), so that the two right panels compare at a glance; clusters
matched to no class are grey. Ground-truth pixels marked "ignore" are black.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from uwstego.atomic import atomic_path
from uwstego.classes import ClassInfo
from uwstego.visualize import colorize, legend, palette

OVERLAY_DIR = "overlays"
UNMATCHED_COLOR = (128, 128, 128)
TITLE_HEIGHT = 22
TITLES = ("image", "prediction", "ground truth", "classes")
LEGEND_WIDTH = 140


def pick_overlays(images: int, count: int) -> set[int]:
    """Indices of ``count`` images spread over the set (first and last included)."""
    if count <= 0 or images <= 0:
        return set()
    return {int(i) for i in np.linspace(0, images - 1, min(count, images)).round()}


def prediction_palette(truth: Sequence[ClassInfo], clusters: int,
                       matched: Sequence[int | None]) -> np.ndarray:
    """A :func:`uwstego.visualize.palette` table giving each cluster its matched class's colour."""
    lut = palette(())
    lut[:clusters] = UNMATCHED_COLOR
    for cls, k in zip(truth, matched, strict=True):
        if k is not None:
            lut[k] = cls.color
    return lut


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    strip = np.full((TITLE_HEIGHT, panel.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, title, (4, TITLE_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel])


def overlay_picture(rgb: np.ndarray, prediction: np.ndarray, mask: np.ndarray,
                    truth: Sequence[ClassInfo], clusters: int,
                    matched: Sequence[int | None]) -> np.ndarray:
    """One RGB picture: the scored square, the prediction, the ground truth and the legend of
    the ground-truth classes (grey: clusters matched to no class), side by side."""
    h = rgb.shape[0]
    names = (*truth, ClassInfo("no class", UNMATCHED_COLOR))
    key = np.full((h, LEGEND_WIDTH, 3), 255, dtype=np.uint8)
    rows = legend(names, row_height=max(8, min(20, h // len(names))), width=LEGEND_WIDTH)[:h]
    key[:rows.shape[0]] = rows
    panels = (rgb, colorize(prediction.astype(np.uint8),
                            prediction_palette(truth, clusters, matched)),
              colorize(mask.astype(np.uint8), palette(truth)), key)
    gap = np.full((rgb.shape[0] + TITLE_HEIGHT, 4, 3), 255, dtype=np.uint8)
    parts = []
    for panel, title in zip(panels, TITLES, strict=True):
        parts += [_titled(panel, title), gap]
    return np.concatenate(parts[:-1], axis=1)


def write_overlays(folder: Path, examples: Sequence[tuple[Path, np.ndarray, np.ndarray,
                                                          np.ndarray]],
                   clusters: Sequence[ClassInfo], truth: Sequence[ClassInfo],
                   matched: Sequence[int | None]) -> list[Path]:
    """``folder/<image stem>.png`` for each ``(image path, rgb, prediction, mask)``."""
    written = []
    for path, rgb, prediction, mask in examples:
        picture = overlay_picture(rgb, prediction, mask, truth, len(clusters), matched)
        ok, data = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"could not encode the overlay of {path}")
        target = folder / f"{path.stem}.png"
        with atomic_path(target) as tmp:
            tmp.write_bytes(data.tobytes())
        written.append(target)
    return written
