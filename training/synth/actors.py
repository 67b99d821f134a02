"""Things that move above the seabed: fish (four body shapes, schooling) and an optional diver.

Actors live in 3D and are projected through the camera each frame: a fish is the union of its
side and top silhouettes (so it reads right from any angle), with its tail beating; a diver is a
set of capsules (torso, head, tank, limbs) and flat fins. Each actor sits at its own range.
Painting is far to near; actors are always above the floor, so the floor never hides them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from uwstego.training.synth.classes import DIVER, FISH
from uwstego.training.synth.motion import Wander
from uwstego.training.synth.scene import Camera, Layout, Pose

FISH_TORUS_M = 12.0   # fish positions repeat with this period: a steady density everywhere
NEAR_M = 0.25
_SHIFT = 4            # sub-pixel bits for cv2 polygon drawing

# shape -> (length range m, half height, half width, tail fork) as fractions of the length
_SHAPES = {
    "fusiform": ((0.12, 0.6), 0.12, 0.07, 0.12),
    "deep": ((0.08, 0.35), 0.30, 0.06, 0.10),
    "eel": ((0.3, 1.0), 0.045, 0.04, 0.03),
    "ray": ((0.3, 1.2), 0.04, 0.45, 0.0),
}
_FISH_COLOURS = [  # back, belly, accent (sRGB)
    ((0.30, 0.36, 0.45), (0.80, 0.82, 0.84), (0.15, 0.18, 0.25)),   # silvery
    ((0.85, 0.75, 0.15), (0.95, 0.88, 0.40), (0.10, 0.10, 0.10)),   # yellow with black bars
    ((0.15, 0.35, 0.75), (0.40, 0.65, 0.90), (0.90, 0.80, 0.20)),   # blue
    ((0.80, 0.30, 0.20), (0.90, 0.60, 0.45), (0.95, 0.95, 0.90)),   # red
    ((0.40, 0.35, 0.28), (0.60, 0.55, 0.45), (0.25, 0.20, 0.15)),   # mottled brown (grouper)
    ((0.25, 0.55, 0.45), (0.50, 0.75, 0.65), (0.85, 0.45, 0.60)),   # parrotfish
    ((0.30, 0.30, 0.30), (0.55, 0.55, 0.52), (0.15, 0.15, 0.15)),   # grey (ray, shark)
]
_PATTERNS = ("plain", "stripes", "bars", "spots")
_SUIT = [(0.08, 0.08, 0.10), (0.10, 0.12, 0.25), (0.25, 0.25, 0.28)]
_TANK = [(0.90, 0.75, 0.10), (0.75, 0.76, 0.78), (0.12, 0.12, 0.12), (0.85, 0.30, 0.10)]
_FINS = [(0.08, 0.08, 0.08), (0.90, 0.80, 0.10), (0.15, 0.30, 0.80)]


@dataclass(frozen=True)
class School:
    shape: str
    length_m: float
    colours: tuple[tuple[float, float, float], ...]
    pattern: str
    path: Wander
    height_m: float
    offsets: np.ndarray    # Nx3 (along, across, up) metres in the school frame
    scales: np.ndarray     # N length factors
    beat_hz: float
    beat_phases: np.ndarray


def sample_schools(rng: np.random.Generator, density_per_100m2: float) -> list[School]:
    """Schools and solitary fish populating one ``FISH_TORUS_M`` square (it repeats)."""
    schools = []
    for _ in range(rng.poisson(density_per_100m2 * FISH_TORUS_M**2 / 100 / 4) + 1):
        shape = str(rng.choice(list(_SHAPES), p=[0.5, 0.25, 0.1, 0.15]))
        lengths, *_ = _SHAPES[shape]
        count = 1 if shape == "ray" or rng.random() < 0.35 else int(rng.integers(3, 15))
        length = float(rng.uniform(*lengths))
        spacing = 2.0 * length
        offsets = rng.normal(0, spacing * np.sqrt(count) / 2, (count, 3)) * [1, 1, 0.4]
        palette = _FISH_COLOURS[rng.integers(len(_FISH_COLOURS))]
        colours = tuple(tuple(np.clip(np.array(c) * rng.uniform(0.85, 1.15, 3), 0, 1).tolist())
                        for c in palette)
        speed = float(rng.uniform(0.1, 0.6) if shape != "ray" else rng.uniform(0.1, 0.3))
        path = Wander.sample(rng, *rng.uniform(0, FISH_TORUS_M, 2), speed=speed, weave_m=2.0,
                             period_s=(6, 30))
        height = float(rng.uniform(0.15, 0.4) if shape == "ray" else rng.uniform(0.3, 3.0))
        schools.append(School(
            shape=shape, length_m=length, colours=colours,
            pattern=str(rng.choice(_PATTERNS)), path=path, height_m=height, offsets=offsets,
            scales=rng.uniform(0.85, 1.15, count), beat_hz=float(rng.uniform(1.0, 3.0)),
            beat_phases=rng.uniform(0, 2 * np.pi, count)))
    return schools


def _nearest_image(xy: np.ndarray, pose: Pose) -> np.ndarray:
    """Copy of each torus position closest to the camera (fish repeat every FISH_TORUS_M)."""
    cam = np.array([pose.x, pose.y])
    return cam + (xy - cam + FISH_TORUS_M / 2) % FISH_TORUS_M - FISH_TORUS_M / 2


def _fish_outlines(shape: str, beat: float) -> tuple[np.ndarray, np.ndarray]:
    """Side and top silhouettes in body units: columns (along, sideways, up); length 1."""
    _, half_h, half_w, fork = _SHAPES[shape]
    u = np.linspace(0.5, -0.5, 13)
    body = np.sqrt(np.clip(1 - (2 * u) ** 2, 0, 1)) ** 0.8
    # Undulation: the rear bends sideways, more towards the tail.
    bend = 0.08 * (0.5 - u) ** 2 * np.sin(beat - 3 * u)
    top = np.stack([u, bend, half_h * body * (1 + 0.3 * u)], axis=1)
    bottom = np.stack([u, bend, -half_h * body * (1 - 0.2 * u)], axis=1)[::-1]
    tail = np.array([[-0.62, bend[-1], fork], [-0.56, bend[-1], 0], [-0.62, bend[-1], -fork]])
    side = np.concatenate([top, tail, bottom] if fork else [top, bottom])
    if shape == "ray":
        width = half_w * np.clip(1 - np.abs(2 * u - 0.1), 0, 1) ** 0.7
    else:
        width = half_w * body
    flat = np.zeros_like(u)
    top_view = np.concatenate([np.stack([u, bend + width, flat], axis=1),
                               np.stack([u, bend - width, flat], axis=1)[::-1]])
    return side, top_view


def _fill(mask: np.ndarray, pixels: np.ndarray, origin: np.ndarray) -> None:
    pts = np.round((pixels - origin) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)


def _paint(layout: Layout, mask: np.ndarray, origin: tuple[int, int], cls: int,
           distance: float, colour: np.ndarray) -> None:
    """Write an actor's pixels (bbox-local ``mask``; ``colour`` HxWx3 sRGB float or RGB)."""
    x0, y0 = origin
    h, w = mask.shape
    region = (slice(y0, y0 + h), slice(x0, x0 + w))
    sel = mask.astype(bool)
    layout.labels[region][sel] = cls
    # An actor is a flat sprite at one distance; where that would put it behind whatever it
    # covers (a long body at a grazing angle), it is pulled just in front.
    behind = layout.range_m[region][sel]
    layout.range_m[region][sel] = np.minimum(np.float32(distance), behind * np.float32(0.999))
    rgb = np.broadcast_to(colour, (h, w, 3))[sel]
    layout.albedo[region][sel, :3] = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    if layout.detail is not None:
        layout.detail[region][sel] = 1.0
    layout.actor_pixels[cls] = layout.actor_pixels.get(cls, 0) + int(sel.sum())


def _clip_box(pixels: np.ndarray, camera: Camera) -> tuple[int, int, int, int] | None:
    lo = np.maximum(np.floor(pixels.min(0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(pixels.max(0)).astype(int) + 2, [camera.width, camera.height])
    if (hi <= lo).any():
        return None
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def _fish_texture(school: School, box: tuple[int, int, int, int], head: np.ndarray,
                  tail: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Countershading plus the school's pattern, in body coordinates read back from the image."""
    x0, y0, x1, y1 = box
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    axis = head - tail
    along = ((xx - tail[0]) * axis[0] + (yy - tail[1]) * axis[1]) / max(axis @ axis, 1e-6)
    centre = (head + tail) / 2
    up_len2 = max(float(up @ up), 1e-6)
    across = ((xx - centre[0]) * up[0] + (yy - centre[1]) * up[1]) / up_len2
    back, belly, accent = (np.asarray(c, np.float32) for c in school.colours)
    mix = (0.5 + 0.5 * np.tanh(3 * across))[..., None]
    colour = belly + (back - belly) * mix
    pattern = {
        "plain": None,
        "stripes": np.sin(2 * np.pi * 2.5 * across) > 0.6,
        "bars": np.sin(2 * np.pi * 4 * along) > 0.5,
        "spots": (np.sin(2 * np.pi * 7 * along) * np.sin(2 * np.pi * 3 * across)) > 0.55,
    }[school.pattern]
    if pattern is not None:
        colour = np.where(pattern[..., None], accent, colour)
    # Dark fins and tail towards the rear end; a rounded body is darker towards its edges.
    shade = np.where(along < 0.03, 0.75, 1.0) * (1 - 0.3 * np.minimum(across * across, 1))
    return colour * shade[..., None]


def _in_frustum(camera: Camera, cam: np.ndarray, size_m: float) -> np.ndarray:
    """Points (camera frame) whose ``size_m`` neighbourhood may reach into the image."""
    z = cam[:, 2]
    ahead = z > NEAR_M + size_m
    safe = np.where(ahead, z, 1.0)
    margin = size_m * camera.focal_px / safe
    px = camera.project(np.column_stack([cam[:, :2], safe]))
    return (ahead & (px[:, 0] > -margin) & (px[:, 0] < camera.width + margin)
            & (px[:, 1] > -margin) & (px[:, 1] < camera.height + margin))


def draw_fish(layout: Layout, camera: Camera, pose: Pose, schools: list[School],
              t: float) -> None:
    """Paint every visible fish at time ``t`` into the layout (labels, range, albedo)."""
    items = []
    for school in schools:
        centre = school.path.position(t)
        yaw = school.path.yaw(t)
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s], [s, c]])
        xy = centre + school.offsets[:, :2] @ rot.T
        xy = _nearest_image(xy, pose)
        z = np.maximum(school.height_m + school.offsets[:, 2], 0.1)
        pos = np.column_stack([xy, z])
        cam = pose.to_camera(pos)
        for k in np.flatnonzero(_in_frustum(camera, cam, school.length_m)):
            items.append((float(np.linalg.norm(cam[k])), school, pos[k], yaw, k))
    for dist, school, pos, yaw, k in sorted(items, key=lambda it: -it[0]):
        _draw_one_fish(layout, camera, pose, school, pos, yaw, k, t, dist)


def _draw_one_fish(layout: Layout, camera: Camera, pose: Pose, school: School, pos: np.ndarray,
                   yaw: float, k: int, t: float, dist: float) -> None:
    length = school.length_m * school.scales[k]
    if length * camera.focal_px / dist < 2.0:  # smaller than two pixels: invisible
        return
    beat = 2 * np.pi * school.beat_hz * t + school.beat_phases[k]
    side, top = _fish_outlines(school.shape, beat)
    c, s = np.cos(yaw), np.sin(yaw)
    basis = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) * length  # rows: along, side, up
    marks = np.array([[0.5, 0, 0], [-0.5, 0, 0], [0, 0, _SHAPES[school.shape][1]]])
    pts = np.concatenate([side, top, marks]) @ basis + pos
    cam = pose.to_camera(pts)
    if (cam[:, 2] < NEAR_M).any():
        return
    px = camera.project(cam)
    n_side, n_top = len(side), len(top)
    box = _clip_box(px[: n_side + n_top], camera)
    if box is None:
        return
    origin = np.array(box[:2], np.float64)
    mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
    _fill(mask, px[:n_side], origin)
    _fill(mask, px[n_side: n_side + n_top], origin)
    head, tail, top_mark = px[n_side + n_top:]
    centre = (head + tail) / 2
    up = top_mark - centre
    colour = _fish_texture(school, box, head, tail, up)
    _paint(layout, mask, box[:2], FISH, dist, colour)
    length_px = float(np.hypot(*(head - tail)))
    if length_px > 14 and school.shape != "ray":
        eye = tail + 0.86 * (head - tail) + 0.3 * up
        radius = max(length_px * 0.035, 1.0)
        cv2.circle(layout.albedo, tuple(int(v) for v in np.round(eye * 16)), int(radius * 16),
                   (15, 15, 20, 0), -1, cv2.LINE_AA, _SHIFT)


@dataclass(frozen=True)
class Diver:
    suit: tuple[float, float, float]
    tank: tuple[float, float, float]
    fins: tuple[float, float, float]
    ahead_m: float          # preferred distance from the camera along the optical axis
    sweep_m: float          # crosses the view from -sweep to +sweep ...
    sweep_s: float          # ... over this many seconds
    height_m: float         # lowest height above the floor
    kick_hz: float
    t0: float


def _pick(rng: np.random.Generator, table: list) -> tuple[float, float, float]:
    colour = np.clip(np.array(table[rng.integers(len(table))]) * rng.uniform(0.9, 1.1, 3), 0, 1)
    return tuple(colour.tolist())


def sample_diver(rng: np.random.Generator, t0: float, duration_s: float) -> Diver:
    return Diver(suit=_pick(rng, _SUIT), tank=_pick(rng, _TANK), fins=_pick(rng, _FINS),
                 ahead_m=float(rng.uniform(1.5, 4.0)), sweep_m=float(rng.uniform(1.5, 4.0)),
                 sweep_s=float(max(duration_s, 1.0) * rng.uniform(0.8, 1.5)),
                 height_m=float(rng.uniform(0.3, 0.8)), kick_hz=float(rng.uniform(0.4, 0.9)),
                 t0=t0)


Anchor = Callable[[float], tuple[np.ndarray, float]]


def _diver_position(diver: Diver, anchor_at: Anchor, pose: Pose, t: float) -> np.ndarray | None:
    """On the optical axis ``ahead_m`` from the camera (closer if the floor is in the way),
    crossing the view sideways; None when there is no room between camera and floor."""
    xy, yaw = anchor_at(t)
    sin_p = max(np.sin(pose.pitch), 1e-3)
    distance = min(diver.ahead_m, (pose.altitude - diver.height_m) / sin_p)
    if distance < 1.2:
        return None
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    side = np.array([-fwd[1], fwd[0]])
    across = diver.sweep_m * (2 * ((t - diver.t0) / diver.sweep_s) - 1)
    height = pose.altitude - distance * sin_p
    return np.append(xy + distance * np.cos(pose.pitch) * fwd + across * side, height)


def draw_diver(layout: Layout, camera: Camera, pose: Pose, diver: Diver, anchor_at: Anchor,
               t: float) -> None:
    """Paint a diver crossing the view ahead of ``anchor_at(t)`` (camera ground xy, heading)."""
    pos = _diver_position(diver, anchor_at, pose, t)
    later = _diver_position(diver, anchor_at, pose, t + 0.2)
    if pos is None or later is None:
        return
    ahead = later - pos
    yaw = float(np.arctan2(ahead[1], ahead[0])) if np.hypot(*ahead[:2]) > 1e-6 else pose.yaw
    c, s = np.cos(yaw), np.sin(yaw)
    basis = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # rows: along, left, up
    kick = 0.12 * np.sin(2 * np.pi * diver.kick_hz * t)

    def at(along: float, left: float, up: float) -> np.ndarray:
        return np.array([along, left, up]) @ basis + pos

    # (start, end, radius, colour) capsules; a sphere is a capsule of zero length.
    parts = [
        (at(-0.35, 0, 0), at(0.3, 0, 0), 0.17, diver.suit),
        (at(0.48, 0, 0.03), at(0.48, 0, 0.03), 0.12, diver.suit),
        (at(-0.25, 0, 0.2), at(0.3, 0, 0.2), 0.09, diver.tank),
    ]
    for sign in (1, -1):
        hip, knee = at(-0.35, 0.12 * sign, 0), at(-0.75, 0.14 * sign, sign * kick)
        ankle = at(-1.15, 0.14 * sign, -sign * kick)
        shoulder, hand = at(0.25, 0.2 * sign, 0), at(0.55, 0.3 * sign, -0.2)
        parts += [(hip, knee, 0.08, diver.suit), (knee, ankle, 0.065, diver.suit),
                  (shoulder, hand, 0.055, diver.suit)]
        fin = [at(-1.12, 0.14 * sign + 0.06, 0), at(-1.6, 0.14 * sign + 0.1, -2 * sign * kick),
               at(-1.6, 0.14 * sign - 0.1, -2 * sign * kick), at(-1.12, 0.14 * sign - 0.06, 0)]
        parts.append((np.array(fin), None, 0.0, diver.fins))
    # Far parts first, so near limbs overlap far ones; each part is at its own distance.
    placed = []
    for start, end, radius, colour in parts:
        centre = np.atleast_2d(start).mean(0) if end is None else (start + end) / 2
        placed.append((float(np.linalg.norm(pose.to_camera(centre[None])[0])), start, end,
                       radius, colour))
    for dist, start, end, radius, colour in sorted(placed, key=lambda p: -p[0]):
        _draw_part(layout, camera, pose, start, end, radius, np.asarray(colour, np.float32), dist)


def _draw_part(layout: Layout, camera: Camera, pose: Pose, start: np.ndarray,
               end: np.ndarray | None, radius: float, colour: np.ndarray, dist: float) -> None:
    pts = np.atleast_2d(start) if end is None else np.stack([start, end])
    cam = pose.to_camera(pts)
    if (cam[:, 2] < NEAR_M).any():
        return
    px = camera.project(cam)
    r_px = radius * camera.focal_px / cam[:, 2].mean()
    box = _clip_box(np.concatenate([px - r_px, px + r_px]), camera)
    if box is None:
        return
    origin = np.array(box[:2], np.float64)
    mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
    if end is None:
        _fill(mask, px, origin)
    else:
        ends = np.round((px - origin) * (1 << _SHIFT)).astype(np.int32)
        thickness = max(round(2 * r_px), 1)
        cv2.line(mask, tuple(ends[0]), tuple(ends[1]), 1, thickness, cv2.LINE_8, _SHIFT)
    _paint(layout, mask, box[:2], DIVER, dist, colour)
