"""Project the seabed world and the swimming actors into one camera frame.

The seabed is the plane z = 0. A pinhole camera at some altitude looks down at a tilt, so the
range grows towards the top of the frame; rays that miss the floor within ``MAX_RANGE_M`` see
open water (label water, range infinite). The result is a ``Layout``: the exact label map, the
range map and the clean sRGB albedo the degradation step starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from uwstego.training.synth.classes import DEBRIS, REEF, ROCK, SAND, VEGETATION, WATER
from uwstego.training.synth.world import WORLD_M, World

MAX_RANGE_M = 60.0
GRAIN_SCALE = 4  # grain texels per world texel
_JITTER_TEXELS = 0.4
# Fine-detail strength per class index (sand, rock, reef, vegetation get texture up close).
_GRAIN_AMP = np.zeros(256, np.float32)
_GRAIN_AMP[[SAND, ROCK, REEF, VEGETATION, DEBRIS]] = [0.12, 0.22, 0.25, 0.2, 0.03]


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    hfov_deg: float

    @property
    def focal_px(self) -> float:
        return 0.5 * self.width / np.tan(np.radians(self.hfov_deg) / 2)

    @property
    def K(self) -> np.ndarray:
        f = self.focal_px
        return np.array([[f, 0, (self.width - 1) / 2], [0, f, (self.height - 1) / 2], [0, 0, 1]])

    @cached_property
    def rays(self) -> np.ndarray:
        """3xHxW float32 unit viewing rays in camera axes (x right, y down, z forward)."""
        f = self.focal_px
        x = (np.arange(self.width, dtype=np.float32) - (self.width - 1) / 2) / f
        y = (np.arange(self.height, dtype=np.float32) - (self.height - 1) / 2) / f
        xx, yy = np.meshgrid(x, y)
        norm = 1 / np.sqrt(xx * xx + yy * yy + 1)
        return np.stack([xx * norm, yy * norm, norm]).astype(np.float32)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Nx3 camera-frame points (z > 0) -> Nx2 pixel coordinates."""
        f = self.focal_px
        z = points_cam[:, 2:3]
        return points_cam[:, :2] / z * f + np.array([(self.width - 1) / 2,
                                                     (self.height - 1) / 2])


@dataclass(frozen=True)
class Pose:
    x: float           # metres, world east
    y: float           # metres, world north
    altitude: float    # metres above the seabed
    yaw: float         # radians, heading measured from +x towards +y
    pitch: float       # radians below the horizon (pi/2 looks straight down)
    roll: float = 0.0

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.altitude])

    @cached_property
    def rotation(self) -> np.ndarray:
        """3x3 camera-to-world matrix; columns are the camera's right, down, forward axes."""
        cy, sy = np.cos(self.yaw), np.sin(self.yaw)
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        forward = np.array([cp * cy, cp * sy, -sp])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(forward, right)
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        right, down = cr * right + sr * down, -sr * right + cr * down
        return np.stack([right, down, forward], axis=1)

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        return (points_world - self.position) @ self.rotation


@dataclass
class Layout:
    labels: np.ndarray     # HxW uint8
    range_m: np.ndarray    # HxW float32, inf where the ray sees open water
    albedo: np.ndarray     # HxWx4 uint8 sRGB + an unused 4th channel (4 remap 3x faster)
    detail: np.ndarray | None  # HxW float32 gain: fine texture up close, or None
    ground_x: np.ndarray   # HxW float32 seabed coordinates (world texels) behind each pixel
    ground_y: np.ndarray
    actor_pixels: dict[int, int] = field(default_factory=dict)  # class -> pixels drawn

    def clean_rgb(self) -> np.ndarray:
        """The undegraded scene as HxWx3 uint8 sRGB."""
        rgb = self.albedo[..., :3].astype(np.float32)
        if self.detail is not None:
            rgb *= self.detail[..., None]
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def wrap(coords: np.ndarray, period: float) -> np.ndarray:
    """In place: coords mod period, into [0, period] (np.mod is ~15x slower)."""
    p = np.float32(period)
    coords -= np.floor(coords * (1 / p)) * p
    return coords


def render_seabed(world: World, camera: Camera, pose: Pose) -> Layout:
    """Labels, range and albedo of the seabed plane seen from ``pose`` (no actors yet)."""
    r = pose.rotation.astype(np.float32)
    rx, ry, rz = camera.rays
    # World direction of every ray; only its three components are needed.
    dx = r[0, 0] * rx + r[0, 1] * ry + r[0, 2] * rz
    dy = r[1, 0] * rx + r[1, 1] * ry + r[1, 2] * rz
    dz = r[2, 0] * rx + r[2, 1] * ry + r[2, 2] * rz
    # Range to the plane along a unit ray: altitude / -dz where the ray points down.
    hit = np.zeros(dz.shape, np.float32)
    np.divide(np.float32(-pose.altitude), dz, out=hit, where=dz < -1e-6)
    water = (hit <= 0) | (hit > MAX_RANGE_M)
    hit[water] = 0
    rng = hit.copy()
    rng[water] = np.inf
    texel = world.texel_m
    # Wrap the camera into the tile first: small map values keep float32 precise.
    ox, oy = (pose.x % WORLD_M) / texel, (pose.y % WORLD_M) / texel
    scale = np.float32(1 / texel)
    gx = dx * hit
    gx *= scale
    gx += np.float32(ox)
    gy = dy * hit
    gy *= scale
    gy += np.float32(oy)
    # cv2.remap is twice as fast on in-range coordinates.
    wrap(gx, world.size_px)
    wrap(gy, world.size_px)
    grain_u = grain_v = None
    # Where a texel spans several pixels, shift the lookups by up to about half a texel along
    # a smooth sub-texel field: class borders come out as ragged curves, not texel staircases.
    # Labels and albedo share the shifted coordinates, so they stay in register.
    strength = hit * np.float32(-0.5 / (camera.focal_px * world.texel_m))
    strength += 1
    np.clip(strength, 0, 1, out=strength)
    if strength.any():
        s, tile = np.float32(GRAIN_SCALE), world.grain.shape[0]
        gxs, gys = gx * s, gy * s
        grain_u = cv2.remap(world.grain, wrap(gxs.copy(), tile), wrap(gys.copy(), tile),
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        gxs += np.float32(tile / 2)
        gys += np.float32(tile / 3)
        grain_v = cv2.remap(world.grain, wrap(gxs, tile), wrap(gys, tile), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_WRAP)
        gx += grain_u * strength * np.float32(_JITTER_TEXELS)
        gy += grain_v * strength * np.float32(_JITTER_TEXELS)
    labels = cv2.remap(world.labels, gx, gy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP)
    albedo = cv2.remap(world.albedo, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    labels[water] = WATER
    albedo[water] = 0
    detail = None
    if grain_u is not None:
        # Sub-texel grain brings back fine texture where the raster is magnified.
        detail = grain_u * cv2.LUT(labels, _GRAIN_AMP)
        detail *= strength
        detail += 1
    return Layout(labels=labels, range_m=rng, albedo=albedo, detail=detail, ground_x=gx,
                  ground_y=gy)
