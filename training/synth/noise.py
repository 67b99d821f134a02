"""Periodic (tileable) smooth noise: the texture source for the seabed, caustics and grain.

Every field wraps around at its edges, so a world raster built from them can be sampled with
``cv2.BORDER_WRAP`` and the camera can travel forever without seams.
"""

from __future__ import annotations

import cv2
import numpy as np

_PAD = 2  # cubic interpolation reads two cells either side


def periodic_noise(rng: np.random.Generator, size: int, cells_y: int,
                   cells_x: int | None = None) -> np.ndarray:
    """A ``size x size`` float32 field of roughly unit variance with ``cells`` features per side.

    A wrap-padded grid of Gaussian values is upsampled with bicubic interpolation and cropped,
    which keeps the result periodic. ``cells_x != cells_y`` gives streaks (anisotropic noise).
    """
    cells_x = cells_y if cells_x is None else cells_x
    for cells in (cells_y, cells_x):
        if size % cells:
            raise ValueError(f"noise cells {cells} must divide the field size {size}")
    grid = rng.standard_normal((cells_y, cells_x)).astype(np.float32)
    padded = np.pad(grid, _PAD, mode="wrap")
    sy, sx = size // cells_y, size // cells_x
    if min(cells_y, cells_x) >= 16:
        # Cheap path: upsample everything, then crop the padding (little waste at this scale).
        big = cv2.resize(padded, (padded.shape[1] * sx, padded.shape[0] * sy),
                         interpolation=cv2.INTER_CUBIC)
        field = big[_PAD * sy: _PAD * sy + size, _PAD * sx: _PAD * sx + size]
    else:
        # Output pixel j samples grid coordinate (j + 0.5) / s - 0.5 (cv2.resize's alignment)
        # shifted by the padding; only the wanted square is computed.
        affine = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + _PAD], [0, 1 / sy, 0.5 / sy - 0.5 + _PAD]])
        field = cv2.warpAffine(padded, affine, (size, size),
                               flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    return np.ascontiguousarray(field) / np.float32(max(float(grid.std()), 1e-6))


def fbm(rng: np.random.Generator, size: int, base_cells: int, octaves: int,
        gain: float = 0.5) -> np.ndarray:
    """Fractal sum of ``octaves`` periodic noises, doubling the cell count each octave."""
    total = np.zeros((size, size), np.float32)
    amplitude, norm, cells = 1.0, 0.0, base_cells
    for _ in range(octaves):
        if cells > size:
            break
        total += np.float32(amplitude) * periodic_noise(rng, size, cells)
        norm += amplitude**2
        amplitude *= gain
        cells *= 2
    return total / np.float32(np.sqrt(norm))
