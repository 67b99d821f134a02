"""Smooth paths in closed form, so any frame of a dive can be rendered without its predecessors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Wander:
    """Steady travel along ``heading`` plus sinusoidal sideways weaving."""

    x0: float
    y0: float
    speed: float                   # m/s along the mean heading
    heading: float                 # radians
    amps: tuple[float, ...]        # sideways weave amplitudes, metres
    omegas: tuple[float, ...]      # rad/s
    phases: tuple[float, ...]

    @classmethod
    def sample(cls, rng: np.random.Generator, x0: float, y0: float, speed: float,
               weave_m: float, period_s: tuple[float, float]) -> Wander:
        omegas = 2 * np.pi / rng.uniform(*period_s, 2)
        # Keep the sideways speed under half the forward speed: the path never turns back.
        amps = np.minimum(rng.uniform(0, weave_m, 2), 0.25 * speed / omegas)
        return cls(x0, y0, speed, float(rng.uniform(0, 2 * np.pi)), tuple(amps.tolist()),
                   tuple(omegas.tolist()), tuple(rng.uniform(0, 2 * np.pi, 2).tolist()))

    def _axes(self) -> tuple[np.ndarray, np.ndarray]:
        along = np.array([np.cos(self.heading), np.sin(self.heading)])
        return along, np.array([-along[1], along[0]])

    def position(self, t: float) -> np.ndarray:
        along, side = self._axes()
        weave = sum(a * np.sin(w * t + p)
                    for a, w, p in zip(self.amps, self.omegas, self.phases, strict=True))
        return np.array([self.x0, self.y0]) + self.speed * t * along + weave * side

    def velocity(self, t: float) -> np.ndarray:
        along, side = self._axes()
        weave = sum(a * w * np.cos(w * t + p)
                    for a, w, p in zip(self.amps, self.omegas, self.phases, strict=True))
        return self.speed * along + weave * side

    def yaw(self, t: float) -> float:
        vx, vy = self.velocity(t)
        return float(np.arctan2(vy, vx))
