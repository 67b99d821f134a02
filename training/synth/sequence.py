"""A synthetic dive: a camera flying over one seabed while fish swim, frame by frame.

Every frame is a pure function of (settings, index): the world, the camera path and the fish
are fixed by the seed, and each frame and segment draws from its own seeded stream. So frames
can be rendered in any order (``Dive.frame``), a resumed job reproduces the missing frames
exactly, and the same seed gives identical bytes. Water, light and sensor settings are redrawn
every ``segment_frames`` frames (a cut, as between dives); geometry stays continuous.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from uwstego.training.synth.actors import Diver, draw_diver, draw_fish, sample_diver, sample_schools
from uwstego.training.synth.classes import CLASS_NAMES
from uwstego.training.synth.degrade import Conditions, Degrader, sample_conditions
from uwstego.training.synth.motion import Wander
from uwstego.training.synth.scene import Camera, Pose, render_seabed
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.synth.snow import SnowField
from uwstego.training.synth.world import WORLD_M, CableRoute, build_world, world_size_px

log = logging.getLogger(__name__)

# Stream tags for np.random.default_rng([seed, tag, ...]).
_DIVE, _SEGMENT, _FRAME = 0, 1, 2


@dataclass(frozen=True)
class SynthFrame:
    index: int
    t_ns: int                 # header stamp
    rgb: np.ndarray           # HxWx3 uint8
    labels: np.ndarray        # HxW uint8 class indices (uwstego.training.synth.classes)
    range_m: np.ndarray       # HxW float32 camera-to-surface distance; inf for open water
    params: dict[str, Any]    # JSON-ready figures sampled or measured for this frame


@dataclass(frozen=True)
class Segment:
    index: int
    conditions: Conditions
    diver: Diver | None


@dataclass(frozen=True)
class Oscillation:
    mean: float
    amp: float
    omega: float
    phase: float

    def at(self, t: float) -> float:
        return self.mean + self.amp * np.sin(self.omega * t + self.phase)


def _oscillation(rng: np.random.Generator, lo: float, hi: float, amp_max: float,
                 period_s: tuple[float, float]) -> Oscillation:
    mean = float(rng.uniform(lo, hi))
    amp = float(rng.uniform(0, min(amp_max, mean - lo, hi - mean)))
    return Oscillation(mean, amp, float(2 * np.pi / rng.uniform(*period_s)),
                       float(rng.uniform(0, 2 * np.pi)))


@dataclass(frozen=True)
class CameraPath:
    """Free survey (``wander``) or pipeline inspection (follows ``cable`` at an offset)."""

    wander: Wander | None
    cable: CableRoute | None
    speed: float
    y0: float
    offset: Oscillation
    altitude: Oscillation
    pitch: Oscillation
    look: Oscillation          # yaw offset: the pilot looks around
    roll: Oscillation

    def ground(self, t: float) -> tuple[np.ndarray, float]:
        if self.wander is not None:
            return self.wander.position(t), self.wander.yaw(t)
        assert self.cable is not None
        y = self.y0 + self.speed * t
        dx = self.offset.amp * self.offset.omega * np.cos(self.offset.omega * t
                                                          + self.offset.phase)
        x = float(self.cable.x_at(y)) + self.offset.at(t)
        vx = float(self.cable.slope_at(y)) * self.speed + dx
        return np.array([x, y]), float(np.arctan2(self.speed, vx))

    def pose(self, t: float) -> Pose:
        xy, yaw = self.ground(t)
        return Pose(x=float(xy[0]), y=float(xy[1]), altitude=self.altitude.at(t),
                    yaw=yaw + self.look.at(t), pitch=self.pitch.at(t), roll=self.roll.at(t))

    @property
    def altitude_max(self) -> float:
        return self.altitude.mean + self.altitude.amp

    @property
    def typical_range_m(self) -> float:
        """Range along the optical axis at the mean altitude and pitch."""
        return self.altitude.mean / np.sin(self.pitch.mean)


def _camera_path(rng: np.random.Generator, settings: DiveSettings,
                 cable: CableRoute | None) -> CameraPath:
    speed = float(rng.uniform(*settings.speed_mps))
    lo, hi = settings.altitude_m
    follow = cable is not None
    return CameraPath(
        wander=None if follow else Wander.sample(
            rng, *rng.uniform(0, WORLD_M, 2), speed=speed, weave_m=3.0, period_s=(20, 80)),
        cable=cable, speed=speed * float(rng.choice([-1, 1])), y0=float(rng.uniform(0, WORLD_M)),
        offset=_oscillation(rng, -1.0, 1.0, 1.0, (20, 60)),
        altitude=_oscillation(rng, lo, hi, 0.5 * (hi - lo), (15, 60)),
        pitch=_oscillation(rng, np.radians(25), np.radians(85), np.radians(12), (10, 40)),
        look=_oscillation(rng, -0.05, 0.05, 0.5 if not follow else 0.2, (8, 30)),
        roll=_oscillation(rng, -0.03, 0.03, 0.06, (4, 12)))


class Dive:
    """Random access to the frames of one dive."""

    def __init__(self, settings: DiveSettings) -> None:
        self.settings = settings
        rng = np.random.default_rng([settings.seed, _DIVE])
        self.camera = Camera(settings.width, settings.height,
                             float(rng.uniform(*settings.hfov_deg)))
        cable = rng.random() < settings.cable_prob
        self.world = build_world(rng, world_size_px(settings.width, settings.height),
                                 cable=cable and settings.hold_out != "cable",
                                 debris=settings.hold_out != "debris")
        self.path = _camera_path(rng, settings, self.world.cable)
        self.schools = sample_schools(rng, settings.fish_density)
        self.snow = SnowField.sample(rng, self.camera, settings.snow_max)
        self.degrader = Degrader(self.camera, settings.seed)
        self.segment = lru_cache(maxsize=4)(self._segment)

    @property
    def segment_frames(self) -> int:
        return self.settings.segment_frames or self.settings.frames

    def time_s(self, index: int) -> float:
        return index / self.settings.fps

    def t_ns(self, index: int) -> int:
        return self.settings.start_ns + round(index * 1e9 / self.settings.fps)

    def _segment(self, k: int) -> Segment:
        rng = np.random.default_rng([self.settings.seed, _SEGMENT, k])
        conditions = sample_conditions(rng, self.settings, self.path.altitude_max,
                                       self.path.typical_range_m)
        diver = None
        if rng.random() < self.settings.diver_prob and self.settings.hold_out != "diver":
            start, length = k * self.segment_frames, self.segment_frames
            duration = length / self.settings.fps
            diver = sample_diver(rng, self.time_s(start) + rng.uniform(0, 0.3) * duration,
                                 duration)
        return Segment(k, conditions, diver)

    def frame(self, index: int) -> SynthFrame:
        if not 0 <= index < self.settings.frames:
            raise IndexError(f"frame {index} is outside 0..{self.settings.frames - 1}")
        t = self.time_s(index)
        seg = self.segment(index // self.segment_frames)
        pose = self.path.pose(t)
        layout = render_seabed(self.world, self.camera, pose)
        draw_fish(layout, self.camera, pose, self.schools, t)
        diver = seg.diver
        if diver is not None and diver.t0 <= t <= diver.t0 + diver.sweep_s:
            draw_diver(layout, self.camera, pose, diver, self.path.ground, t)
        cond = seg.conditions
        camera_depth = max(cond.seabed_depth_m - pose.altitude, 0.3)
        measured: dict[str, Any] = {"gain": 1.0, "snow_count": 0}
        if not self.settings.degrade:
            rgb = layout.clean_rgb()
        else:
            exposure = min(0.5 / self.settings.fps, 1 / 60)
            snow = self.snow.sprites(self.camera, pose, self.path.pose(t - exposure), t,
                                     exposure, layout.range_m, cond.snow_per_frame)
            frame_rng = np.random.default_rng([self.settings.seed, _FRAME, index])
            rgb, measured = self.degrader.degrade(layout, self.world, cond, camera_depth, t,
                                                  snow, frame_rng)
        params = self._params(index, seg, pose, camera_depth, layout.labels, layout.range_m)
        params.update(measured)
        return SynthFrame(index=index, t_ns=self.t_ns(index), rgb=rgb, labels=layout.labels,
                          range_m=layout.range_m, params=params)

    def _params(self, index: int, seg: Segment, pose: Pose, camera_depth: float,
                labels: np.ndarray, range_m: np.ndarray) -> dict[str, Any]:
        cond = seg.conditions
        counts = np.bincount(labels.reshape(-1), minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
        finite = range_m[np.isfinite(range_m)]
        stats = None
        if finite.size:
            # The median from a sample of at most ~20k pixels is plenty and much cheaper.
            sample = finite[:: max(finite.size // 20000, 1)]
            stats = {"min": float(finite.min()), "median": float(np.median(sample)),
                     "max": float(finite.max())}
        return {
            "index": index, "t_s": round(self.time_s(index), 6), "segment": seg.index,
            "water_type": cond.water_type, "seabed_depth_m": round(cond.seabed_depth_m, 3),
            "camera_depth_m": round(camera_depth, 3), "altitude_m": round(pose.altitude, 3),
            "pitch_deg": round(float(np.degrees(pose.pitch)), 2),
            "daylight": cond.daylight, "lamp_power": round(cond.lamp_power, 3),
            "caustics": round(cond.caustics, 3), "jpeg_quality": cond.jpeg_quality,
            "backscatter_ratio": [round(b / d, 3) for b, d in zip(cond.beta_b, cond.beta_d,
                                                                   strict=True)],
            "range_m": {k: round(v, 3) for k, v in stats.items()} if stats else None,
            "class_fractions": {name: round(float(c) / labels.size, 5)
                                for name, c in zip(CLASS_NAMES, counts, strict=True) if c},
        }

    def describe(self) -> dict[str, Any]:
        """Dive-level facts for the output's JSON: camera, world, path and segments."""
        segments = -(-self.settings.frames // self.segment_frames)
        return {
            "settings": self.settings.to_dict(),
            "camera": {"width": self.camera.width, "height": self.camera.height,
                       "hfov_deg": round(self.camera.hfov_deg, 3),
                       "K": self.camera.K.round(4).tolist()},
            "world": {"size_m": WORLD_M, "texel_m": self.world.texel_m,
                      "cable": self.world.cable.kind if self.world.cable else None},
            "fish_schools": len(self.schools),
            "segments": [{"index": k, "conditions": self.segment(k).conditions.to_dict(),
                          "diver": self.segment(k).diver is not None} for k in range(segments)],
        }


def generate_dive(settings: DiveSettings) -> Iterator[SynthFrame]:
    """Frames 0..frames-1 of the dive fixed by ``settings``."""
    dive = Dive(settings)
    for index in range(settings.frames):
        yield dive.frame(index)
