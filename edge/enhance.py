"""Underwater enhancement: red-channel compensation, gray-world balance and CLAHE on L*.

The chain runs in two stages so that training and the vehicle apply exactly the same maths:

- the *host stage* (:meth:`Enhancer.host_stage`) measures the frame on a small copy, smooths the
  statistics over time and turns them into five numbers ``[c_r, c_b, g_r, g_g, g_b]``;
- the *graph stage* (:func:`apply_params`) is pure elementwise maths, also built into the fused
  ONNX graph, so on the vehicle it runs on the GPU.

CLAHE needs the compensated, balanced image (tile histograms do not commute with the gains), so
when it is on the whole chain runs on the host and the graph stage gets the identity.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from uwstego.settings_io import from_dict_strict

IDENTITY_PARAMS = np.array([0.0, 0.0, 1.0, 1.0, 1.0], dtype=np.float32)
# Upper bounds of the settings that size work or memory (CLAHE keeps tiles x tiles histograms
# and OpenCV refuses grids past its limits) or that no water needs; see docs/bundle.md §1.
UPPER_BOUNDS = {"red_alpha": 10.0, "blue_alpha": 10.0, "gain_max": 100.0, "stats_size": 1024,
                "clahe_clip": 1000.0, "clahe_tiles": 64}


@dataclass(frozen=True)
class EnhanceSettings:
    """Saved with every checkpoint and bundle: the chain the head was trained on."""

    red_compensation: bool = True
    red_alpha: float = 1.0
    blue_compensation: bool = False
    blue_alpha: float = 1.0
    # Below a few grey levels of red there is nothing left to recover, only noise to amplify.
    min_red_mean: float = 4.0 / 255.0
    gray_world: bool = True
    gain_min: float = 1.0 / 3.0
    gain_max: float = 3.0
    # Pixels with any channel at or above this are specular highlights or lamps, not the scene.
    saturation: float = 0.98
    # EMA weight of the newest frame; 1.0 turns temporal smoothing off.
    temporal_alpha: float = 0.1
    stats_size: int = 64
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tiles: int = 8

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("red_alpha", "blue_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, low_open in (("min_red_mean", False), ("saturation", True)):
            value = getattr(self, name)
            if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], "
                                 f"got {value}")
        if not 0.0 < self.temporal_alpha <= 1.0:
            raise ValueError(f"temporal_alpha must be in (0, 1], got {self.temporal_alpha}")
        if not 0.0 < self.gain_min <= 1.0 <= self.gain_max:
            raise ValueError(
                f"gain clamp must satisfy 0 < gain_min <= 1 <= gain_max, "
                f"got [{self.gain_min}, {self.gain_max}]"
            )
        if self.stats_size < 8:
            raise ValueError(f"stats_size must be >= 8 pixels, got {self.stats_size}")
        if self.clahe_clip <= 0 or self.clahe_tiles < 1:
            raise ValueError("clahe_clip must be > 0 and clahe_tiles >= 1")
        for name, bound in UPPER_BOUNDS.items():
            if getattr(self, name) > bound:
                raise ValueError(f"{name} must be <= {bound}, got {getattr(self, name)}")

    def _check_types(self) -> None:
        # Settings come back from JSON, which also spells Infinity, NaN, "1.0" and true.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be true or false, got {value!r}")
            if f.type == "int" and (isinstance(value, bool)
                                    or not isinstance(value, numbers.Integral)):
                raise ValueError(f"{f.name} must be an integer, got {value!r}")
            if f.type == "float" and (isinstance(value, bool)
                                      or not isinstance(value, numbers.Real)
                                      or not math.isfinite(value)):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")

    @classmethod
    def raw(cls) -> EnhanceSettings:
        """Every step off: the A/B baseline."""
        return cls(red_compensation=False, gray_world=False, clahe=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnhanceSettings:
        return from_dict_strict(cls, data, "enhancement settings")

    def host_steps(self) -> list[str]:
        """Steps that run on the host (CPU, Python) before the engine."""
        steps = ["statistics"]
        if self.clahe:
            steps += [*self._colour_steps(), "clahe"]
        return steps

    def graph_steps(self) -> list[str]:
        """Steps that run inside the fused graph (on the accelerator)."""
        return ([] if self.clahe else self._colour_steps()) + ["imagenet_normalisation"]

    def _colour_steps(self) -> list[str]:
        steps = []
        if self.red_compensation:
            steps.append("red_compensation")
        if self.blue_compensation:
            steps.append("blue_compensation")
        if self.gray_world:
            steps.append("gray_world")
        return steps


def check_rgb_frame(frame: Any) -> np.ndarray:
    """Return ``frame`` if it is a non-empty HxWx3 uint8 array, else raise a ValueError."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"expected a numpy image, got {type(frame).__name__}")
    if frame.size == 0:
        raise ValueError(f"empty image (shape {frame.shape})")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        raise ValueError(
            f"grey image of shape {frame.shape}: expected 3-channel RGB "
            "(convert with cv2.cvtColor(img, cv2.COLOR_GRAY2RGB))"
        )
    if frame.ndim != 3 or frame.shape[2] not in (3,):
        if frame.ndim == 3 and frame.shape[2] == 4:
            raise ValueError(
                f"4-channel image of shape {frame.shape}: drop the alpha channel "
                "(cv2.COLOR_RGBA2RGB) before enhancement"
            )
        raise ValueError(f"expected an image of shape (H, W, 3), got {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"expected dtype uint8 (0-255), got {frame.dtype}")
    return frame


def apply_params(img01: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The graph stage on a float HxWx3 RGB image in [0, 1]; the ONNX graph mirrors it."""
    c_r, c_b, g_r, g_g, g_b = (float(v) for v in np.asarray(params, dtype=np.float32))
    out = img01.astype(np.float32, copy=True)
    r, g, b = out[..., 0], out[..., 1], out[..., 2]
    if c_r:
        r += c_r * (1.0 - r) * g
    if c_b:
        b += c_b * (1.0 - b) * g
    out *= np.array([g_r, g_g, g_b], dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def clahe_lightness(img01: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """CLAHE on the L* channel only, so hue is untouched; uint8 RGB out."""
    u8 = (np.clip(img01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _small_copy(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return rgb.reshape(-1, 3).astype(np.float32) / 255.0


class Enhancer:
    """Per-stream enhancement state (the EMA of the frame statistics).

    Use one instance per camera stream and :meth:`reset` between unrelated images, as training
    does for still images.
    """

    def __init__(self, settings: EnhanceSettings | None = None) -> None:
        self.settings = settings or EnhanceSettings()
        self._raw_means: np.ndarray | None = None
        self._comp_means: np.ndarray | None = None

    def reset(self) -> None:
        self._raw_means = None
        self._comp_means = None

    def _smooth(self, previous: np.ndarray | None, current: np.ndarray) -> np.ndarray:
        if previous is None:
            return current
        a = self.settings.temporal_alpha
        return (1.0 - a) * previous + a * current

    def frame_params(self, rgb: np.ndarray) -> np.ndarray:
        """Measure one frame, update the temporal state and return the graph-stage parameters."""
        s = self.settings
        px = _small_copy(check_rgb_frame(rgb), s.stats_size)
        valid = px.max(axis=1) < s.saturation
        if valid.sum() >= 16:
            px = px[valid]
        self._raw_means = self._smooth(self._raw_means, px.mean(axis=0))
        r_mean, g_mean, b_mean = (float(v) for v in self._raw_means)
        c_r = s.red_alpha * (g_mean - r_mean) if s.red_compensation and r_mean >= s.min_red_mean \
            else 0.0
        c_b = s.blue_alpha * (g_mean - b_mean) if s.blue_compensation else 0.0
        params = np.array([c_r, c_b, 1.0, 1.0, 1.0], dtype=np.float32)
        if s.gray_world:
            comp = apply_params(px[None], params)[0]
            self._comp_means = self._smooth(self._comp_means, comp.mean(axis=0))
            means = np.maximum(self._comp_means, 1e-6)
            params[2:] = np.clip(means.mean() / means, s.gain_min, s.gain_max)
        return params

    def host_stage(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the vehicle does before the engine: ``(uint8 image for the graph, params[5])``."""
        params = self.frame_params(rgb)
        if not self.settings.clahe:
            return rgb, params
        img = apply_params(rgb.astype(np.float32) / 255.0, params)
        return clahe_lightness(img, self.settings.clahe_clip, self.settings.clahe_tiles), \
            IDENTITY_PARAMS.copy()

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The whole chain as float32 HxWx3 in [0, 1]: what the backbone sees, for training."""
        img, params = self.host_stage(rgb)
        return apply_params(img.astype(np.float32) / 255.0, params)
