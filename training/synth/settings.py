"""Settings of a synthetic dive: everything that, with the seed, fixes every output byte."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uwstego.settings_io import from_dict_strict, read_json_object
from uwstego.survey.geo import check_origin

JERLOV_TYPES = ("I", "IA", "IB", "II", "III", "1C", "3C", "5C", "7C", "9C")
# Actor classes a dive can be rendered without (novelty benchmarks: train without, test with).
HOLD_OUT_CLASSES = ("debris", "diver", "cable")


@dataclass(frozen=True)
class DiveSettings:
    seed: int = 0
    frames: int = 100
    width: int = 640
    height: int = 480
    fps: float = 10.0
    start_ns: int = 1_700_000_000_000_000_000   # header stamp of frame 0
    segment_frames: int = 50          # water, light and depth are redrawn every N frames; 0: never
    water_types: tuple[str, ...] = JERLOV_TYPES
    depth_m: tuple[float, float] = (1.0, 20.0)      # seabed depth
    altitude_m: tuple[float, float] = (0.5, 5.0)    # camera height above the seabed
    hfov_deg: tuple[float, float] = (55.0, 80.0)
    speed_mps: tuple[float, float] = (0.15, 0.5)
    night_prob: float = 0.15          # no daylight: the lamps are the only light
    lamp_prob: float = 0.5            # lamps on in daylight
    snow_max: float = 400.0           # marine snow particles per 640x480 frame, at most
    fish_density: float = 15.0        # fish per 100 m^2 (schools and solitary fish)
    diver_prob: float = 0.25          # a diver crosses the view in this share of segments
    cable_prob: float = 0.4           # the dive has a cable or pipeline (the ROV follows it)
    jpeg_prob: float = 0.5            # share of segments whose frames pass a JPEG link
    jpeg_quality: tuple[int, int] = (50, 95)
    # Water so turbid that the seabed at the dive's typical range would be haze alone is not
    # drawn (a pilot flies closer or turns back): the mean beam transmission along the optical
    # axis must reach this. 0 allows every type.
    min_transmission: float = 0.2
    degrade: bool = True              # False: clean albedo only, for debugging and tests
    # One of HOLD_OUT_CLASSES never appears ("" = none). Random draws are made as without it,
    # so debris and diver hold-outs give the same dive minus that class (a cable also steers
    # the camera path, so a cable hold-out flies another path).
    hold_out: str = ""
    # (latitude, longitude) of the world's origin: the bag then also holds a NavSatFix topic
    # (training/synth/navigation.py). None: odometry in the local frame only.
    nav_origin: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not (64 <= self.width <= 1920 and 64 <= self.height <= 1080):
            raise ValueError(f"image size {self.width}x{self.height} is outside 64x64..1920x1080")
        if self.frames < 1 or self.fps <= 0 or self.segment_frames < 0:
            raise ValueError(f"need frames >= 1, fps > 0 and segment_frames >= 0; got "
                             f"{self.frames}, {self.fps}, {self.segment_frames}")
        unknown = set(self.water_types) - set(JERLOV_TYPES)
        if unknown or not self.water_types:
            raise ValueError(f"unknown water types {sorted(unknown)}; choose from "
                             f"{', '.join(JERLOV_TYPES)}")
        for name in ("depth_m", "altitude_m", "hfov_deg", "speed_mps", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(lo, hi)}")
        if self.jpeg_quality[1] > 100 or self.hfov_deg[1] >= 170:
            raise ValueError("jpeg_quality must be <= 100 and hfov_deg < 170")
        for name in ("night_prob", "lamp_prob", "diver_prob", "cable_prob", "jpeg_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if not 0 <= self.min_transmission < 1:
            raise ValueError(f"min_transmission must be in [0, 1), got {self.min_transmission}")
        if self.hold_out and self.hold_out not in HOLD_OUT_CLASSES:
            raise ValueError(f"hold_out {self.hold_out!r}: expected one of "
                             f"{', '.join(HOLD_OUT_CLASSES)}")
        if self.nav_origin is not None:
            check_origin(self.nav_origin)
        if self.snow_max < 0 or self.fish_density < 0:
            raise ValueError("snow_max and fish_density must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiveSettings:
        return from_dict_strict(cls, data, "dive settings")


def read_dive_settings(path: Path) -> DiveSettings:
    """The settings a synth folder records (``settings.json``), read strictly: a damaged,
    foreign or newer file is one ValueError naming it."""
    fix = "remove the folder or choose another output folder"
    try:
        doc = read_json_object(path, "dive settings")
    except ValueError as exc:  # it names the file
        raise ValueError(f"{exc}; {fix}") from exc
    try:
        return DiveSettings.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not the settings of a dive this uwstego writes ({exc}); "
                         f"{fix}") from exc
