"""The seabed of a dive: a periodic raster of class labels and clean albedo, built once per dive.

The seabed is a flat plane tiled by a ``WORLD_M``-metre square that wraps around, so the camera
can travel any distance. The label raster is the ground truth; the albedo raster (sRGB uint8,
relief shading baked in) is what the camera sees before the water degrades it. Class textures
differ in structure (ripples, cracks, polyps, blades, smooth plastic) while their colour ranges
overlap, so colour alone does not separate them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from uwstego.training.synth.classes import CABLE, DEBRIS, REEF, ROCK, SAND, VEGETATION
from uwstego.training.synth.noise import fbm, periodic_noise

WORLD_M = 20.48
TILE = 256  # side of the grain and caustic tiles


@dataclass(frozen=True)
class CableRoute:
    """A cable or pipeline running along world +y, meandering in x; periodic over the world."""

    kind: str                      # "cable" or "pipeline"
    width_m: float
    x0_m: float
    amps_m: tuple[float, ...]
    cycles: tuple[int, ...]        # whole meanders per world tile, so the route wraps
    phases: tuple[float, ...]

    def x_at(self, y_m: np.ndarray | float) -> np.ndarray | float:
        x = self.x0_m
        for a, c, p in zip(self.amps_m, self.cycles, self.phases, strict=True):
            x = x + a * np.sin(2 * np.pi * c * np.asarray(y_m) / WORLD_M + p)
        return x

    def slope_at(self, y_m: np.ndarray | float) -> np.ndarray | float:
        """dx/dy of the route."""
        s = 0.0
        for a, c, p in zip(self.amps_m, self.cycles, self.phases, strict=True):
            k = 2 * np.pi * c / WORLD_M
            s = s + a * k * np.cos(k * np.asarray(y_m) + p)
        return s


@dataclass(frozen=True)
class World:
    labels: np.ndarray    # NxN uint8 class index
    albedo: np.ndarray    # NxNx4 uint8 sRGB reflectance (shading baked in) + a zero channel
    grain: np.ndarray     # TILExTILE float32, zero-mean fine detail for close-ups
    caustic: np.ndarray   # TILExTILE float32 in [0, 1], ridged light network
    cable: CableRoute | None

    @property
    def size_px(self) -> int:
        return int(self.labels.shape[0])

    @property
    def texel_m(self) -> float:
        return WORLD_M / self.size_px


def world_size_px(width: int, height: int) -> int:
    """Raster side for a camera size: ~3 texels per image pixel across, 256..2048."""
    target = 3 * max(width, height)
    return int(min(2048, max(256, 2 ** int(np.ceil(np.log2(target))))))


def _cells(size: int, feature_m: float, finest: int = 2) -> int:
    """Noise cells per side for features of ``feature_m``: a power of two dividing ``size``."""
    cells = 2 ** round(np.log2(max(WORLD_M / feature_m, 1.0)))
    return int(min(max(cells, 1), size // finest))


def _upsample(field: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling that keeps a periodic field periodic (wrap-pad, resize, crop)."""
    if factor == 1:
        return field
    padded = np.pad(field, 1, mode="wrap")
    big = cv2.resize(padded, (padded.shape[1] * factor, padded.shape[0] * factor),
                     interpolation=cv2.INTER_LINEAR)
    n = field.shape[0] * factor
    return np.ascontiguousarray(big[factor: factor + n, factor: factor + n])


def _blur_wrap(field: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur; wide blurs run on a downsampled copy."""
    factor = 1
    while sigma / factor > 4 and field.shape[0] // (2 * factor) >= 64:
        factor *= 2
    n = field.shape[0] // factor
    small = cv2.resize(field, (n, n), interpolation=cv2.INTER_AREA) if factor > 1 else field
    pad = int(3 * sigma / factor) + 1
    blurred = cv2.GaussianBlur(np.pad(small, pad, mode="wrap"), (0, 0), sigma / factor)
    return _upsample(np.ascontiguousarray(blurred[pad:-pad, pad:-pad]), factor)


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], spread: float,
            brightness: tuple[float, float]) -> np.ndarray:
    colour = np.asarray(rgb, np.float32) * (1 + rng.uniform(-spread, spread, 3))
    return np.clip(colour * rng.uniform(*brightness), 0.02, 0.98).astype(np.float32)


_SAND = [(0.86, 0.82, 0.70), (0.76, 0.68, 0.52), (0.58, 0.56, 0.50), (0.50, 0.42, 0.32),
         (0.33, 0.31, 0.29)]
_ROCK = [(0.42, 0.41, 0.40), (0.44, 0.36, 0.28), (0.22, 0.22, 0.23), (0.50, 0.36, 0.30),
         (0.38, 0.40, 0.34)]
_ENCRUST = [(0.72, 0.45, 0.52), (0.36, 0.46, 0.26), (0.60, 0.55, 0.40)]
_REEF = [(0.86, 0.45, 0.60), (0.56, 0.36, 0.62), (0.90, 0.56, 0.30), (0.76, 0.66, 0.36),
         (0.70, 0.60, 0.46), (0.50, 0.55, 0.34), (0.40, 0.62, 0.66)]
_VEG = [(0.30, 0.50, 0.22), (0.46, 0.37, 0.18), (0.36, 0.48, 0.20), (0.50, 0.28, 0.26),
        (0.42, 0.46, 0.24)]
_PLASTIC = [(0.90, 0.90, 0.92), (0.20, 0.45, 0.85), (0.85, 0.15, 0.12), (0.12, 0.12, 0.13),
            (0.95, 0.80, 0.15), (0.55, 0.80, 0.90), (0.25, 0.60, 0.30)]
_GLASS = [(0.25, 0.50, 0.25), (0.45, 0.28, 0.12), (0.75, 0.82, 0.80)]
_NET = [(0.20, 0.50, 0.30), (0.15, 0.30, 0.65), (0.85, 0.45, 0.12), (0.10, 0.10, 0.10)]
_PIPE = [(0.56, 0.56, 0.52), (0.82, 0.60, 0.18), (0.16, 0.16, 0.16), (0.85, 0.85, 0.80)]
_CABLE = [(0.10, 0.10, 0.10), (0.90, 0.75, 0.10), (0.85, 0.40, 0.10), (0.50, 0.50, 0.50)]


class _Fields:
    """Shared full-resolution noise fields; classes read them at their own pixels only."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.n = n
        self.fine = periodic_noise(rng, n, _cells(n, 0.025))
        self.mid = periodic_noise(rng, n, _cells(n, 0.12))
        self.mid2 = periodic_noise(rng, n, _cells(n, 0.08))
        low = max(n // 4, 64)
        self.coarse = _upsample(fbm(rng, low, _cells(low, 1.5), 3), n // low)
        along, across = _cells(n, 0.5, finest=8), _cells(n, 0.02)
        blades = periodic_noise(rng, n, along, across)
        self.blades = blades if rng.random() < 0.5 else np.ascontiguousarray(blades.T)


def _layout(rng: np.random.Generator, f: _Fields) -> np.ndarray:
    """Habitat label raster: sand with rock outcrops, reef patches and vegetation beds."""
    n = f.n
    low = max(n // 4, 64)
    labels = np.full((n, n), SAND, np.uint8)
    fractions = dict(zip((ROCK, REEF, VEGETATION),
                         rng.dirichlet([2.5, 1.2, 1.2, 1.2])[1:] * rng.uniform(0.5, 1.0),
                         strict=True))
    # Rock outcrops are compact with clean edges; reef and vegetation patches are ragged.
    octaves = {ROCK: 3, REEF: 4, VEGETATION: 4}
    ragged = {ROCK: 0.03 * f.fine + 0.05 * f.mid, REEF: 0.05 * f.fine + 0.12 * f.mid,
              VEGETATION: 0.08 * f.fine + 0.15 * f.mid}
    fields = {cls: _upsample(fbm(rng, low, _cells(low, rng.uniform(2.5, 6.0)), octaves[cls]),
                             n // low) for cls in fractions}
    fields[REEF] += 0.8 * fields[ROCK]  # reef grows next to rock
    for cls in (VEGETATION, REEF, ROCK):  # later classes win where patches overlap
        if fractions[cls] < 0.01:
            continue
        field = fields[cls] + ragged[cls]
        mask = field > np.quantile(field[::7, ::7], 1 - fractions[cls])
        if cls == VEGETATION:
            mask &= f.mid > -1.1  # sparse beds: sand shows through
        labels[mask] = cls
    return labels


def _sand(rng: np.random.Generator, f: _Fields, idx: np.ndarray, texel: float) -> np.ndarray:
    base = _jitter(rng, _SAND[rng.integers(len(_SAND))], 0.08, (0.7, 1.1))
    y, x = np.divmod(idx, f.n)
    wavelength = max(rng.uniform(0.06, 0.2), 4 * texel)
    angle = rng.uniform(0, np.pi)
    ky = round(WORLD_M * np.sin(angle) / wavelength)
    kx = round(WORLD_M * np.cos(angle) / wavelength)
    phase = (2 * np.pi / f.n) * (kx * x + ky * y).astype(np.float32)
    ripple = np.sin(phase + 2.0 * f.coarse.flat[idx])
    shade = (1 + rng.uniform(0, 0.16) * ripple + 0.07 * f.fine.flat[idx]
             + 0.1 * f.coarse.flat[idx])
    specks = f.fine.flat[idx] > 2.1
    shade[specks] *= rng.choice([0.6, 1.35])
    return base * shade[:, None]


def _rock(rng: np.random.Generator, f: _Fields, idx: np.ndarray) -> np.ndarray:
    base = _jitter(rng, _ROCK[rng.integers(len(_ROCK))], 0.1, (0.7, 1.2))
    mid, mid2 = f.mid.flat[idx], f.mid2.flat[idx]
    # Solid stone: broad blotches, a little grain, dark cracks, some encrusting growth.
    shade = 1 + 0.1 * mid + 0.25 * f.coarse.flat[idx] + 0.03 * f.fine.flat[idx]
    shade[np.abs(f.coarse.flat[idx] + 0.3 * mid2) < 0.03] *= 0.4  # cracks
    colour = base * shade[:, None]
    encrust = np.clip((mid2 - rng.uniform(1.3, 2.5)) * 2.0, 0, 0.7)[:, None]
    crust = _jitter(rng, _ENCRUST[rng.integers(len(_ENCRUST))], 0.1, (0.8, 1.1))
    return colour * (1 - encrust) + crust * encrust


def _reef(rng: np.random.Generator, f: _Fields, idx: np.ndarray) -> np.ndarray:
    picks = rng.choice(len(_REEF), 4, replace=False)
    colours = [_jitter(rng, _REEF[k], 0.1, (0.75, 1.1)) for k in picks]
    fine, mid = f.fine.flat[idx], f.mid.flat[idx]
    kind = np.digitize(f.coarse.flat[idx], [-0.4, 0.4])
    brain = 0.6 + 0.5 * (0.5 + 0.5 * np.sin(9.0 * mid))
    polyps = np.clip((fine - 0.2) * 2.0, 0, 1)
    branches = 0.35 + 0.9 * (1 - np.minimum(np.abs(fine), 1)) ** 6
    out = np.empty((idx.size, 3), np.float32)
    for k, shade in enumerate((brain, 0.55 + 0.6 * polyps, branches)):
        sel = kind == k
        out[sel] = colours[k] * shade[sel, None]
    spots = (kind == 1) & (polyps > 0.7)
    out[spots] = 0.5 * out[spots] + 0.5 * colours[3]
    return out


def _vegetation(rng: np.random.Generator, f: _Fields, idx: np.ndarray) -> np.ndarray:
    base = _jitter(rng, _VEG[rng.integers(len(_VEG))], 0.12, (0.7, 1.2))
    blades = 0.5 + 0.5 * np.tanh(2.0 * f.blades.flat[idx])
    shade = 0.3 + 0.85 * blades + 0.1 * f.coarse.flat[idx]
    return base * shade[:, None]


def _relief(labels: np.ndarray, f: _Fields, texel: float) -> np.ndarray:
    """Height in metres: rock outcrops and reef bumps over a gently rippled floor."""
    rock = _blur_wrap((labels == ROCK).astype(np.float32), 0.06 / texel + 0.5)
    reef = _blur_wrap((labels == REEF).astype(np.float32), 0.03 / texel + 0.5)
    return (rock * (0.35 + 0.12 * f.coarse + 0.05 * f.mid) + reef * (0.1 + 0.03 * f.mid)
            + 0.004 * f.fine)


def _shading(height: np.ndarray, texel: float, rng: np.random.Generator) -> np.ndarray:
    """Soft downwelling light: mostly from above, from a random azimuth, plus cavity darkening."""
    gx = (np.roll(height, -1, 1) - np.roll(height, 1, 1)) / (2 * texel)
    gy = (np.roll(height, -1, 0) - np.roll(height, 1, 0)) / (2 * texel)
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.9, 1.3)
    lx, ly = np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation)
    lz = np.sin(elevation)
    lambert = (-gx * lx - gy * ly + lz) / np.sqrt(1 + gx * gx + gy * gy) / lz
    cavity = np.clip(1 + 3.0 * (height - _blur_wrap(height, 0.15 / texel)), 0.55, 1.1)
    return (0.5 + 0.5 * np.clip(lambert, 0, 1.6)) * cavity


def _draw(labels: np.ndarray, albedo: np.ndarray, poly: np.ndarray, colour: np.ndarray,
          cls: int = DEBRIS) -> None:
    pts = [np.round(poly * 16).astype(np.int32)]
    cv2.fillPoly(labels, pts, cls, lineType=cv2.LINE_8, shift=4)
    cv2.fillPoly(albedo, pts, colour.tolist(), lineType=cv2.LINE_8, shift=4)


def _rotated(points: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]]) + centre


def _debris(rng: np.random.Generator, labels: np.ndarray, albedo: np.ndarray,
            texel: float, fine: np.ndarray) -> None:
    """Bottles, cans, plastic bags and net fragments lying on the floor."""
    n = labels.shape[0]
    count = rng.poisson(rng.uniform(0.5, 4.0) * WORLD_M**2 / 100)
    margin = int(2.0 / texel)
    for _ in range(count):
        centre = rng.uniform(margin, n - margin, 2)
        angle = rng.uniform(0, np.pi)
        kind = rng.choice(["bottle", "can", "bag", "bag", "net"])
        if kind == "bottle":
            length = rng.uniform(0.2, 0.32) / texel
            radius = max(rng.uniform(0.03, 0.045) / texel, 1.0)
            glass = rng.random() < 0.5
            colour = _jitter(rng, (_GLASS if glass else _PLASTIC)[rng.integers(3 if glass else 7)],
                             0.05, (0.9, 1.05))
            t = np.linspace(0, np.pi, 8)
            cap = np.c_[length / 2 + radius * np.sin(t) * 0.6, radius * np.cos(t)]
            body = np.r_[cap, [[-length / 2, -radius], [-length / 2, radius]]]
            _draw(labels, albedo, _rotated(body, angle, centre), colour)
            neck = np.array([[length / 2, -radius / 3], [length / 2 + radius * 1.6, -radius / 3],
                             [length / 2 + radius * 1.6, radius / 3], [length / 2, radius / 3]])
            _draw(labels, albedo, _rotated(neck, angle, centre), colour * 0.8)
            shine = np.array([[-length / 2.5, -radius * 0.5], [length / 2.5, -radius * 0.5],
                              [length / 2.5, -radius * 0.2], [-length / 2.5, -radius * 0.2]])
            _draw(labels, albedo, _rotated(shine, angle, centre),
                  np.clip(colour * 0.5 + 0.5, 0, 1))
        elif kind == "can":
            axes = (max(rng.uniform(0.05, 0.07) / texel, 1), max(0.033 / texel, 1))
            colour = _jitter(rng, _PLASTIC[rng.integers(7)], 0.1, (0.9, 1.1))
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            _draw(labels, albedo, _rotated(np.c_[axes[0] * np.cos(t), axes[1] * np.sin(t)],
                                           angle, centre), colour)
        elif kind == "bag":
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            radius = rng.uniform(0.12, 0.3) / texel
            r = radius * np.clip(1 + 0.35 * np.convolve(
                np.r_[rng.standard_normal(24), rng.standard_normal(3)], np.ones(3) / 3,
                "valid")[:24], 0.4, 1.6)
            poly = _rotated(np.c_[r * np.cos(t), r * 0.7 * np.sin(t)], angle, centre)
            colour = _jitter(rng, _PLASTIC[rng.integers(7)], 0.1, (0.85, 1.05))
            lo = np.floor(poly.min(0)).astype(int)
            hi = np.ceil(poly.max(0)).astype(int) + 1
            mask = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
            cv2.fillPoly(mask, [np.round((poly - lo) * 16).astype(np.int32)], 1, shift=4)
            sel = mask.astype(bool)
            region = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
            labels[region][sel] = DEBRIS
            wrinkle = (0.8 + 0.2 * np.tanh(fine[region][sel]))[:, None]
            # Thin film: the floor shows through a little.
            albedo[region][sel] = 0.3 * albedo[region][sel] + 0.7 * colour * wrinkle
        else:
            size = rng.uniform(0.8, 2.5) / texel
            mesh = rng.uniform(0.08, 0.2) / texel
            thick = max(round(rng.uniform(0.012, 0.03) / texel), 1)
            colour = _jitter(rng, _NET[rng.integers(len(_NET))], 0.1, (0.8, 1.1))
            lines = np.arange(-size / 2, size / 2, mesh)
            s = np.linspace(-size / 2, size / 2, 12)
            for along in (0, 1):
                for offset in lines:
                    if rng.random() < 0.2:  # torn strands
                        continue
                    wobble = 0.25 * mesh * np.sin(s / (0.3 * size) * np.pi + rng.uniform(0, 6))
                    keep = slice(rng.integers(0, 4), 12 - rng.integers(0, 4))
                    pts = np.c_[s, offset + wobble][keep]
                    pts = _rotated(pts[:, ::-1] if along else pts, angle, centre)
                    ipts = [np.round(pts * 16).astype(np.int32)]
                    cv2.polylines(labels, ipts, False, DEBRIS, thick, cv2.LINE_8, shift=4)
                    cv2.polylines(albedo, ipts, False, colour.tolist(), thick, cv2.LINE_8,
                                  shift=4)


def _cable(rng: np.random.Generator, labels: np.ndarray, albedo: np.ndarray,
           texel: float) -> CableRoute:
    pipeline = rng.random() < 0.5
    route = CableRoute(
        kind="pipeline" if pipeline else "cable",
        width_m=rng.uniform(0.3, 0.8) if pipeline else rng.uniform(0.03, 0.1),
        x0_m=rng.uniform(0, WORLD_M),
        amps_m=tuple(rng.uniform(0.0, 1.5, 2)), cycles=(1, int(rng.integers(2, 4))),
        phases=tuple(rng.uniform(0, 2 * np.pi, 2)))
    colour = _jitter(rng, (_PIPE if pipeline else _CABLE)[rng.integers(4)], 0.08, (0.85, 1.1))
    width = max(route.width_m / texel, 1.0)
    y = np.linspace(-1.0, WORLD_M + 1.0, 400)
    x = route.x_at(y)
    # Buried stretches: the route dips under the sand here and there.
    visible = periodic_noise(rng, 400, 8)[0] > -0.9
    for shift in (-WORLD_M, 0.0, WORLD_M):
        pts = np.c_[(x + shift) / texel, y / texel]
        for lo, hi in _runs(visible):
            ipts = [np.round(pts[lo:hi] * 16).astype(np.int32)]
            # Narrowing, brightening passes fake a lit cylinder: dark flanks, bright top.
            for frac, gain in zip(np.linspace(1.0, 0.15, 6), np.linspace(0.55, 1.3, 6),
                                  strict=True):
                thick = max(round(width * frac), 1)
                cv2.polylines(labels, ipts, False, CABLE, thick, cv2.LINE_8, shift=4)
                cv2.polylines(albedo, ipts, False, np.clip(colour * gain, 0, 1).tolist(), thick,
                              cv2.LINE_8, shift=4)
    return route


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` is true."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a > 1]


def build_world(rng: np.random.Generator, size_px: int, cable: bool,
                debris: bool = True) -> World:
    """Generate the seabed raster (``size_px`` square, a power of two >= 256); ``debris=False``
    draws the debris into scratch rasters (same random stream) and leaves it off the seabed."""
    if size_px < 256 or size_px & (size_px - 1):
        raise ValueError(f"world size must be a power of two >= 256, got {size_px}")
    texel = WORLD_M / size_px
    f = _Fields(rng, size_px)
    labels = _layout(rng, f)
    albedo = np.empty((size_px, size_px, 3), np.float32)
    flat = albedo.reshape(-1, 3)
    painters = {SAND: lambda i: _sand(rng, f, i, texel), ROCK: lambda i: _rock(rng, f, i),
                REEF: lambda i: _reef(rng, f, i), VEGETATION: lambda i: _vegetation(rng, f, i)}
    for cls, paint in painters.items():
        idx = np.flatnonzero(labels == cls)
        if idx.size:
            flat[idx] = paint(idx)
    albedo *= _shading(_relief(labels, f, texel), texel, rng)[..., None]
    if debris:
        _debris(rng, labels, albedo, texel, f.fine)
    else:
        _debris(rng, labels.copy(), albedo.copy(), texel, f.fine)
    route = _cable(rng, labels, albedo, texel) if cable else None
    grain = (0.7 * periodic_noise(rng, TILE, 64) + 0.7 * periodic_noise(rng, TILE, 128))
    ridge = 1 - np.minimum(np.abs(periodic_noise(rng, TILE, 4) + 0.5 * periodic_noise(
        rng, TILE, 8)), 1)
    srgb = np.zeros((size_px, size_px, 4), np.uint8)
    srgb[..., :3] = np.clip(albedo * 255 + 0.5, 0, 255)
    return World(labels=labels, albedo=srgb, grain=grain.astype(np.float32),
                 caustic=(ridge**4).astype(np.float32), cable=route)
