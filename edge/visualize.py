"""Pictures of a segmentation: colour labels, blend them over the frame, a legend, coverage."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from uwstego.classes import ClassInfo

# Labels outside the class list (255 = ignore in ground truth) are drawn in this colour.
UNKNOWN_COLOR = (0, 0, 0)


def palette(classes: Sequence[ClassInfo]) -> np.ndarray:
    """A 256x3 uint8 lookup table: row i is class i's RGB colour, the rest UNKNOWN_COLOR."""
    lut = np.empty((256, 3), dtype=np.uint8)
    lut[:] = UNKNOWN_COLOR
    for i, c in enumerate(classes):
        lut[i] = c.color
    return lut


def _check_labels(labels: np.ndarray) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be a uint8 HxW array, got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} "
                         f"{getattr(labels, 'shape', '')}")
    return labels


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 HxW class ids -> uint8 HxWx3 RGB through a :func:`palette` table."""
    if lut.shape != (256, 3) or lut.dtype != np.uint8:
        raise ValueError(f"lut must be a 256x3 uint8 palette, got {lut.dtype} {lut.shape}")
    # One table lookup per channel on the ids repeated 3 times: several times faster than
    # numpy's fancy indexing (lut[labels]) and, being OpenCV, without holding the GIL.
    ids = cv2.cvtColor(np.ascontiguousarray(_check_labels(labels)), cv2.COLOR_GRAY2RGB)
    return cv2.LUT(ids, lut.reshape(256, 1, 3))


def overlay(rgb: np.ndarray, labels: np.ndarray, lut: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised labels over an RGB frame: ``alpha`` 0 is the frame, 1 the colours."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = colorize(labels, lut)
    if rgb.shape != colors.shape or rgb.dtype != np.uint8:
        raise ValueError(f"frame {rgb.shape} {rgb.dtype} does not match labels "
                         f"{labels.shape}: expected uint8 {colors.shape}")
    return cv2.addWeighted(colors, alpha, rgb, 1.0 - alpha, 0.0)


def coverage(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of pixels per class (float32[num_classes]); unknown labels count for none."""
    labels = np.ascontiguousarray(_check_labels(labels))
    # An OpenCV histogram counts the same as np.bincount, about 5x faster on a camera frame.
    counts = cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel()[:num_classes]
    return (counts.astype(np.float64) / max(labels.size, 1)).astype(np.float32)


def legend(classes: Sequence[ClassInfo], fractions: Sequence[float] | None = None,
           row_height: int = 20, width: int = 220) -> np.ndarray:
    """An RGB image listing each class's colour swatch, name and (optionally) coverage in %."""
    if fractions is not None and len(fractions) != len(classes):
        raise ValueError(f"{len(fractions)} coverage values for {len(classes)} classes")
    img = np.full((row_height * len(classes), width, 3), 255, dtype=np.uint8)
    scale = row_height / 40.0
    for i, c in enumerate(classes):
        top = i * row_height
        cv2.rectangle(img, (2, top + 2), (row_height - 2, top + row_height - 3), c.color, -1)
        text = c.name if fractions is None else f"{c.name} {100.0 * fractions[i]:.1f}%"
        cv2.putText(img, text, (row_height + 4, top + int(row_height * 0.72)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img
