"""Physically based underwater degradation of a clean layout (docs/underwater.md §4.2-4.4).

Per channel c, with range z and the camera at depth D (revised model, Akkaynak & Treibitz):

    I_c = J_c * (E_c * caustics + lamp) * e^(-beta^D_c z)          direct signal
        + (e^(-G_c z) - e^(-beta^D_c z)) * blur(J)_c * (...)        forward scatter
        + Binf_c * (1 - e^(-beta^B_c z))                             ambient backscatter
        + lamp backscatter + marine snow

with E_c = E0_c e^(-K_c D) (none at night), beta^D from the Jerlov N_c table, K_c from the Jerlov
K_d table, beta^B = s * beta^D (s ~ U(0.6, 1.4) per channel), Binf_c = mu * (b_c / beta_c) * E_c.
The lamp is at the camera: irradiance L0 cos^m(theta) / z^2, attenuated out and back. The sensor
then applies vignetting, auto-exposure gain, Poisson-Gaussian noise, sRGB encoding and optionally
a JPEG link. Only the image changes: labels are never touched here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from uwstego.training.synth.scene import Camera, Layout, wrap
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.synth.world import TILE, World


@dataclass(frozen=True)
class WaterType:
    beta: tuple[float, float, float]     # beam attenuation R, G, B (m^-1), = -ln N_c
    kd: tuple[float, float, float]       # diffuse downwelling attenuation R, G, B (m^-1)
    b550: float                          # particle scattering at 550 nm (m^-1) [own estimate]


# docs/underwater.md §4.3: beta = -ln N_c, K_d at 650/550/450 nm. Scattering b is an [own] estimate,
# growing with turbidity; it only sets the backscatter colour and strength.
JERLOV: dict[str, WaterType] = {
    "I": WaterType((0.163, 0.040, 0.018), (0.36, 0.063, 0.019), 0.02),
    "IA": WaterType((0.174, 0.046, 0.025), (0.37, 0.067, 0.026), 0.03),
    "IB": WaterType((0.186, 0.051, 0.033), (0.375, 0.072, 0.036), 0.04),
    "II": WaterType((0.223, 0.078, 0.062), (0.40, 0.089, 0.068), 0.06),
    "III": WaterType((0.288, 0.122, 0.117), (0.445, 0.12, 0.135), 0.10),
    "1C": WaterType((0.288, 0.122, 0.134), (0.45, 0.12, 0.25), 0.10),
    "3C": WaterType((0.342, 0.198, 0.223), (0.46, 0.19, 0.39), 0.17),
    "5C": WaterType((0.400, 0.315, 0.400), (0.54, 0.30, 0.56), 0.27),
    "7C": WaterType((0.478, 0.494, 0.693), (0.63, 0.46, 0.89), 0.40),
    "9C": WaterType((0.598, 0.777, 1.238), (0.76, 0.63, 1.6), 0.60),
}
_WAVELENGTH_RATIO = np.array([550 / 650, 1.0, 550 / 450])  # b ~ 1/lambda
_LAMP_SOURCE_M = 0.4       # lamp-to-camera offset: the near volume the lamp does not light
_HORIZON_M = (40.0, 60.0)  # seabed fades out here even in the clearest water [own]


@dataclass(frozen=True)
class Conditions:
    """Water, light and sensor of one segment of a dive; saved with every frame."""

    water_type: str
    beta_d: tuple[float, float, float]
    beta_b: tuple[float, float, float]
    kd: tuple[float, float, float]
    scatter_b: tuple[float, float, float]
    seabed_depth_m: float
    daylight: bool
    sun: tuple[float, float, float]
    lamp_power: float                 # 0: lamps off
    lamp_exponent: float              # m in cos^m(theta)
    lamp_backscatter: float
    backscatter_weight: float         # mu
    snow_per_frame: float             # expected visible particles at 640x480
    caustics: float                   # amplitude at the surface (0: none)
    patchiness: float                 # range modulation of an inhomogeneous medium
    forward_g: float
    exposure: float                   # auto-exposure target (linear mean luminance)
    max_gain: float
    full_well: float                  # photo-electrons at value 1 and gain 1
    read_noise: float
    vignetting: float
    jpeg_quality: int                 # 0: no JPEG link

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def visible_water_types(settings: DiveSettings, range_m: float) -> list[str]:
    """The allowed water types in which the seabed at ``range_m`` is more than haze."""
    def transmission(name: str) -> float:
        return float(np.exp(-np.mean(JERLOV[name].beta) * range_m))

    visible = [t for t in settings.water_types if transmission(t) >= settings.min_transmission]
    return visible or [max(settings.water_types, key=transmission)]


def sample_conditions(rng: np.random.Generator, settings: DiveSettings, altitude_max: float,
                      typical_range_m: float) -> Conditions:
    """Draw one segment's conditions; lamps are sized to light ``typical_range_m`` [own]."""
    name = str(rng.choice(visible_water_types(settings, typical_range_m)))
    water = JERLOV[name]
    beta = np.array(water.beta)
    s = rng.uniform(0.6, 1.4, 3)
    scatter = np.minimum(water.b550 * rng.uniform(0.7, 1.4) * _WAVELENGTH_RATIO, 0.9 * beta)
    daylight = rng.random() >= settings.night_prob
    lamp = (not daylight) or rng.random() < settings.lamp_prob
    # The seabed lies at least half a metre below the camera's highest point.
    lo, hi = settings.depth_m
    depth = float(rng.uniform(max(lo, altitude_max + 0.5), max(hi, altitude_max + 1.0)))
    shallow = daylight and depth - altitude_max < 5.0
    jpeg = rng.random() < settings.jpeg_prob
    return Conditions(
        water_type=name, beta_d=tuple(beta.tolist()), beta_b=tuple((s * beta).tolist()),
        kd=water.kd, scatter_b=tuple(scatter.tolist()), seabed_depth_m=depth,
        daylight=bool(daylight),
        sun=tuple((rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, 3)).tolist()),
        lamp_power=float(rng.uniform(0.3, 1.5) * max(typical_range_m, 1.0) ** 2) if lamp
        else 0.0,
        lamp_exponent=float(rng.uniform(1.0, 12.0)),
        lamp_backscatter=float(rng.uniform(0.005, 0.03)),
        backscatter_weight=float(rng.uniform(0.25, 0.6)),
        snow_per_frame=float(settings.snow_max * rng.random() ** 1.5),
        caustics=float(rng.uniform(0.2, 0.6)) if shallow and rng.random() < 0.7 else 0.0,
        patchiness=float(rng.uniform(0, 0.3)),
        forward_g=float(rng.uniform(0.2, 0.5)),
        exposure=float(rng.uniform(0.1, 0.22)), max_gain=float(rng.uniform(8, 40)),
        full_well=float(rng.uniform(1500, 8000)), read_noise=float(rng.uniform(0.0005, 0.002)),
        vignetting=float(rng.uniform(0.1, 0.45)),
        jpeg_quality=int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1))
        if jpeg else 0)


def _srgb_to_linear() -> np.ndarray:
    x = np.arange(256) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    y = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


_TO_LINEAR = _srgb_to_linear()
# sensor output coded as sqrt(linear) in 8 bits -> sRGB
_SQRT_TO_SRGB = _linear_to_srgb((np.arange(256) / 255.0) ** 2)
_FAR_M = 1000.0
_SNOW_REFLECTANCE = 0.15
_SHIFT = 4  # sub-pixel bits for cv2 drawing


@dataclass
class Snow:
    """Marine snow sprites to add, in pixels (built by ``snow.py``)."""

    starts: np.ndarray        # Nx2 position at the end of the exposure
    ends: np.ndarray          # Nx2 position at its start (equal: no streak)
    radius_px: np.ndarray
    distance_m: np.ndarray
    cos_theta: np.ndarray     # angle to the lamp axis
    weight: np.ndarray        # brightness factor (defocused discs are dimmer)


class Degrader:
    """The model for one camera, with its caches: lamp profiles, vignetting, a noise bank.

    The arithmetic runs on separate HxW float32 planes per channel: numpy broadcasting of an
    HxW map over HxWx3 is several times slower, and cv2.exp is much faster than np.exp.
    """

    def __init__(self, camera: Camera, seed: int) -> None:
        self.camera = camera
        self.seed = seed
        self._lamp_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        # Pyramid levels for the forward-scatter blur: ~1.5 px at 640 px wide, scaled.
        self._blur_levels = max(0, round(float(np.log2(2 * camera.width / 640))))

    def _lamp(self, exponent: float) -> tuple[np.ndarray, np.ndarray]:
        """cos^m of the angle to the lamp axis (the optical axis) and its square root."""
        if exponent not in self._lamp_cache:
            profile = np.power(np.clip(self.camera.rays[2], 0, 1), exponent).astype(np.float32)
            self._lamp_cache = {exponent: (profile, np.sqrt(profile))}
        return self._lamp_cache[exponent]

    @cached_property
    def _radius2(self) -> np.ndarray:
        """Squared distance from the image centre, 1 at the corners."""
        h, w = self.camera.height, self.camera.width
        y = np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2
        x = np.arange(w, dtype=np.float32)[None, :] - (w - 1) / 2
        return ((x * x + y * y) / ((w / 2) ** 2 + (h / 2) ** 2)).astype(np.float32)

    @cached_property
    def _noise_bank(self) -> np.ndarray:
        n = self.camera.width * self.camera.height
        return np.random.default_rng([self.seed, 0x5E5]).standard_normal(4 * n, np.float32)

    def _noise_planes(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Three HxW standard-normal planes: a random window into a fixed bank (cheap)."""
        h, w = self.camera.height, self.camera.width
        start = int(rng.integers(0, h * w))
        return [self._noise_bank[start + c * h * w: start + (c + 1) * h * w].reshape(h, w)
                for c in range(3)]

    def _blurred(self, albedo: np.ndarray) -> np.ndarray:
        sizes, img = [], albedo
        for _ in range(self._blur_levels):
            sizes.append((img.shape[1], img.shape[0]))
            img = cv2.pyrDown(img)
        for size in reversed(sizes):
            img = cv2.pyrUp(img, dstsize=size)
        return img

    def degrade(self, layout: Layout, world: World, cond: Conditions, camera_depth: float,
                t: float, snow: Snow, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Return the degraded sRGB uint8 frame and the per-frame figures worth saving."""
        cam = self.camera
        j = [cv2.LUT(p, _TO_LINEAR) for p in cv2.split(layout.albedo)[:3]]
        if layout.detail is not None:
            for plane in j:
                plane *= layout.detail
        jb = [cv2.LUT(p, _TO_LINEAR) for p in cv2.split(self._blurred(layout.albedo))[:3]]
        z = layout.range_m
        if cond.patchiness > 0:
            grid = rng.uniform(1 - cond.patchiness, 1 + cond.patchiness, (4, 5)).astype(np.float32)
            z = z * cv2.resize(grid, (cam.width, cam.height), interpolation=cv2.INTER_LINEAR)
        zf = np.minimum(z, _FAR_M)              # open water: e^(-beta * 1000) == 0
        b = np.asarray(cond.scatter_b)
        # Forward scatter e^(-G z) - e^(-beta z) = e^(-beta z) (e^((1 - g) b z) - 1), with the
        # mean b over channels; range capped at the horizon so the factor stays finite.
        fs = cv2.exp(np.minimum(z, _HORIZON_M[1]) * np.float32((1 - cond.forward_g) * b.mean()))
        fs -= 1
        fade = None
        if np.nanmax(np.where(np.isfinite(z), z, 0)) > _HORIZON_M[0]:
            # Seabed beyond ~40 m fades into the water colour even in the clearest water.
            fade = np.clip((_HORIZON_M[1] - zf) / (_HORIZON_M[1] - _HORIZON_M[0]), 0, 1)

        ambient = np.zeros(3)
        if cond.daylight:
            ambient = np.asarray(cond.sun) * np.exp(-np.asarray(cond.kd) * camera_depth)
        caustics = None
        if cond.caustics > 0 and cond.daylight:
            caustics = self._caustics(layout, world, cond, camera_depth, t)
        irradiance = lamp_bs = None
        if cond.lamp_power > 0:
            profile, sqrt_profile = self._lamp(cond.lamp_exponent)
            near = np.maximum(zf, np.float32(0.3))
            irradiance = profile / (near * near)
            irradiance *= np.float32(cond.lamp_power)
            # Lamp backscatter grows with range and saturates; the first ~0.4 m is unlit.
            lamp_bs = zf + np.float32(_LAMP_SOURCE_M)
            np.divide(np.float32(-_LAMP_SOURCE_M), lamp_bs, out=lamp_bs)
            lamp_bs += 1
            lamp_bs *= sqrt_profile
            lamp_bs *= np.float32(cond.lamp_power * cond.lamp_backscatter / _LAMP_SOURCE_M)

        omega = np.clip(b / np.asarray(cond.beta_d), 0, 0.95)
        b_inf = cond.backscatter_weight * omega * ambient
        out = []
        for c in range(3):
            trans = cv2.exp(zf * np.float32(-cond.beta_d[c]))
            if fade is not None:
                trans *= fade
            d = jb[c] * fs
            d += j[c]
            d *= trans
            if irradiance is None and caustics is None:
                d *= np.float32(ambient[c])
            else:
                light = (caustics * np.float32(ambient[c]) if caustics is not None
                         else np.full_like(d, ambient[c]))
                if irradiance is not None:
                    light += irradiance * trans
                d *= light
            back = cv2.exp(zf * np.float32(-cond.beta_b[c]))
            back *= np.float32(-b_inf[c])
            back += np.float32(b_inf[c])
            d += back
            if lamp_bs is not None:
                d += lamp_bs * np.float32(b[c])
            out.append(d)
        snow_count = self._add_snow(out, snow, cond, ambient, omega)
        rgb, gain = self._sensor(out, cond, rng)
        if cond.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg_quality])
            rgb = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else rgb
        return rgb, {"gain": round(gain, 4), "snow_count": snow_count}

    def _sensor(self, planes: list[np.ndarray], cond: Conditions,
                rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Vignetting, auto-exposure, Poisson-Gaussian noise and sRGB encoding."""
        vignette = 1 - np.float32(cond.vignetting) * self._radius2
        luma = sum(k * p[::4, ::4] for k, p in zip((0.2126, 0.7152, 0.0722), planes,
                                                      strict=True)) * vignette[::4, ::4]
        gain = float(np.clip(cond.exposure / max(float(luma.mean()), 1e-9), 0.25, cond.max_gain))
        scale = vignette * np.float32(gain)
        encoded = []
        for d, noise in zip(planes, self._noise_planes(rng), strict=True):
            d *= scale
            # Shot noise (variance grows with signal and gain) plus read noise.
            std = d * np.float32(gain / cond.full_well)
            std += np.float32((gain * cond.read_noise) ** 2)
            np.maximum(std, 0, out=std)
            np.sqrt(std, out=std)
            std *= noise
            d += std
            np.maximum(d, 0, out=d)
            np.sqrt(d, out=d)   # square-root code: 8 bits keep the shadows smooth
            encoded.append(cv2.LUT(cv2.convertScaleAbs(d, alpha=255), _SQRT_TO_SRGB))
        return cv2.merge(encoded), gain

    def _caustics(self, layout: Layout, world: World, cond: Conditions, depth: float,
                  t: float) -> np.ndarray:
        """1 + a * C(x, t): two scrolling layers of a ridged network projected on the floor."""
        amp = cond.caustics * float(np.exp(-np.mean(cond.kd) * depth))
        out = np.zeros(layout.ground_x.shape, np.float32)
        # The tile's ridge network has 4 cells across; scale it to a few cells per metre.
        for cells_per_m, (vx, vy) in ((4.0, (0.21, 0.13)), (3.1, (-0.17, 0.19))):
            px_per_m = cells_per_m * TILE / 4
            k = np.float32(world.texel_m * px_per_m)
            mx = wrap(layout.ground_x * k + np.float32(vx * t * px_per_m), TILE)
            my = wrap(layout.ground_y * k + np.float32(vy * t * px_per_m), TILE)
            out += cv2.remap(world.caustic, mx, my, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_WRAP)
        out -= 0.6
        np.maximum(out, 0, out=out)
        out *= np.float32(2.5 * amp)
        out += 1
        return out

    def _add_snow(self, planes: list[np.ndarray], snow: Snow, cond: Conditions,
                  ambient: np.ndarray, omega: np.ndarray) -> int:
        if snow.radius_px.size == 0:
            return 0
        lamp = np.zeros_like(snow.distance_m)
        if cond.lamp_power > 0:
            # The lamps sit off the camera, so the nearest particles are not lit harder still.
            lamp = (cond.lamp_power * np.clip(snow.cos_theta, 0, 1) ** cond.lamp_exponent
                    / (snow.distance_m**2 + _LAMP_SOURCE_M**2))
        colours = ((ambient * (0.5 + omega) + lamp[:, None])
                   * np.exp(-np.outer(snow.distance_m, cond.beta_d))
                   * (_SNOW_REFLECTANCE * snow.weight)[:, None])
        layer = np.zeros((self.camera.height, self.camera.width, 3), np.float32)
        one = 1 << _SHIFT
        starts = np.round(snow.starts * one).astype(np.int32).tolist()
        ends = np.round(snow.ends * one).astype(np.int32).tolist()
        streak = (snow.starts != snow.ends).any(axis=1).tolist()
        radius = np.round(snow.radius_px * one).astype(np.int32).tolist()
        width = np.maximum(np.round(2 * snow.radius_px), 1).astype(np.int32).tolist()
        for p0, p1, moving, r, thick, c in zip(starts, ends, streak, radius, width,
                                               colours.tolist(), strict=True):
            if moving:
                cv2.line(layer, p0, p1, c, thick, cv2.LINE_AA, _SHIFT)
            else:
                cv2.circle(layer, p0, r, c, -1, cv2.LINE_AA, _SHIFT)
        for plane, add in zip(planes, cv2.split(layer), strict=True):
            plane += add
        return int(snow.radius_px.size)
