"""Marine snow: particles drifting in the water around the camera, coherent from frame to frame.

Particles fill a small periodic box that travels with the camera (each particle is seen at its
copy nearest the camera), sink slowly and drift with a current. Close particles are defocused
into faint discs; camera motion during the exposure smears them into streaks. Particles behind
the scene (farther than the range at their pixel) or under the seabed are dropped. Snow only
adds light: it never changes the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uwstego.training.synth.degrade import Snow
from uwstego.training.synth.scene import Camera, Pose

BOX_M = 3.0
NEAR_M = 0.12
FOCUS_M = 1.5


@dataclass(frozen=True)
class SnowField:
    points: np.ndarray      # Mx3 metres in [0, BOX_M)
    size_m: np.ndarray      # particle radius
    rank: np.ndarray        # particle k is active when rank < wanted share
    sink_mps: np.ndarray
    current: np.ndarray     # 2 m/s, shared
    visible_share: float    # share of the box inside the view, for calibrating the density

    @classmethod
    def sample(cls, rng: np.random.Generator, camera: Camera, max_per_frame: float) -> SnowField:
        probe = rng.uniform(-BOX_M / 2, BOX_M / 2, (20000, 3))
        share = float(_in_view(camera, probe).mean())
        scaled = max_per_frame * camera.width * camera.height / (640 * 480)
        count = int(np.ceil(1.2 * scaled / max(share, 1e-3))) if scaled > 0 else 0
        return cls(points=rng.uniform(0, BOX_M, (count, 3)),
                   size_m=np.exp(rng.normal(np.log(0.0012), 0.5, count)),
                   rank=rng.random(count), sink_mps=rng.uniform(0.002, 0.02, count),
                   current=rng.normal(0, 0.05, 2), visible_share=share)

    def _relative(self, pose: Pose, t: float, active: np.ndarray) -> np.ndarray:
        drift = np.column_stack([np.broadcast_to(self.current * t, (int(active.sum()), 2)),
                                 -self.sink_mps[active] * t])
        world = self.points[active] + drift
        return (world - pose.position + BOX_M / 2) % BOX_M - BOX_M / 2

    def sprites(self, camera: Camera, pose: Pose, pose_before: Pose, t: float,
                exposure_s: float, range_m: np.ndarray, per_frame: float) -> Snow:
        """Visible particles at ``t`` for an expected ``per_frame`` count (at 640x480)."""
        wanted = per_frame * camera.width * camera.height / (640 * 480)
        full = self.points.shape[0] * self.visible_share
        active = self.rank < (wanted / full if full > 0 else 0.0)
        rel = self._relative(pose, t, active)
        rel_before = self._relative(pose_before, t - exposure_s, active)
        cam = rel @ pose.rotation
        cam_before = rel_before @ pose_before.rotation
        keep = _in_view(camera, cam) & (rel[:, 2] > -pose.altitude)
        cam, cam_before, size = cam[keep], cam_before[keep], self.size_m[active][keep]
        px = camera.project(cam)
        xi = np.clip(px[:, 0].astype(int), 0, camera.width - 1)
        yi = np.clip(px[:, 1].astype(int), 0, camera.height - 1)
        dist = np.linalg.norm(cam, axis=1)
        front = dist < range_m[yi, xi]
        px, cam, cam_before, size, dist = (a[front] for a in (px, cam, cam_before, size, dist))
        # Streaks only for particles that did not wrap around the box during the exposure.
        smear = (cam_before[:, 2] > NEAR_M) & (np.abs(cam - cam_before).max(1) < BOX_M / 4)
        ends = px.copy()
        ends[smear] = camera.project(cam_before[smear])
        scale = camera.width / 640
        sharp = size * camera.focal_px / cam[:, 2]
        blur = 2.5 * scale * np.abs(1 / cam[:, 2] - 1 / FOCUS_M)
        radius = np.minimum(np.hypot(sharp, blur), 40 * scale)
        weight = np.clip((sharp / radius) ** 2, 0.03, 1.0)
        return Snow(starts=px, ends=ends, radius_px=np.maximum(radius, 0.5), distance_m=dist,
                    cos_theta=cam[:, 2] / dist, weight=weight)


def _in_view(camera: Camera, cam: np.ndarray) -> np.ndarray:
    z = cam[:, 2]
    ok = (z > NEAR_M) & (z < BOX_M / 2)
    px = camera.project(np.where(ok[:, None], cam, [0, 0, 1]))
    return (ok & (px[:, 0] >= 0) & (px[:, 0] < camera.width) & (px[:, 1] >= 0)
            & (px[:, 1] < camera.height))
