"""The vehicle's navigation in a synthetic dive, as a USBL-aided vehicle records it.

``nav_msgs/Odometry`` on ``/nav/odom`` (frame ``odom``: x east, y north, z up, so z is minus the
depth) and, when the dive has a ``nav_origin``, ``sensor_msgs/NavSatFix`` on ``/nav/fix`` (altitude
minus the depth), both at :data:`NAV_RATE_HZ` on their own clock, offset from the camera's, so
that a frame's position is always interpolated, as with a real vehicle. Samples are pure
functions of the dive: the truth of any frame is the camera path at its time (docs/survey.md §1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from uwstego.bags import BagWriter
from uwstego.contract import NAV_FIX_TOPIC, NAV_ODOM_TOPIC
from uwstego.survey.geo import to_latlon
from uwstego.survey.navigation import FIX_TYPE, ODOMETRY_TYPE
from uwstego.training.synth.sequence import Dive

NAV_RATE_HZ = 5.0
NAV_CLOCK_OFFSET_S = 0.073  # the navigation clock does not tick with the camera's
NAV_FRAME_ID = "odom"
VEHICLE_FRAME_ID = "base_link"
MIN_CAMERA_DEPTH_M = 0.3  # the renderer's floor (training/synth/sequence.py)


@dataclass(frozen=True)
class NavSample:
    t_ns: int
    east: float
    north: float
    depth: float
    yaw: float


def vehicle_state(dive: Dive, t: float) -> NavSample:
    """Where the camera is at ``t`` seconds into the dive (any time, not only frame times)."""
    settings = dive.settings
    frame = min(max(math.floor(t * settings.fps + 1e-9), 0), settings.frames - 1)
    seabed = dive.segment(frame // dive.segment_frames).conditions.seabed_depth_m
    pose = dive.path.pose(t)
    _, heading = dive.path.ground(t)
    depth = max(seabed - pose.altitude, MIN_CAMERA_DEPTH_M)
    return NavSample(settings.start_ns + round(t * 1e9), pose.x, pose.y, depth, heading)


def nav_samples(dive: Dive) -> Iterator[NavSample]:
    """From one navigation period before the first frame to one after the last."""
    period = 1.0 / NAV_RATE_HZ
    end = (dive.settings.frames - 1) / dive.settings.fps + period
    k = -1
    while (t := k * period + NAV_CLOCK_OFFSET_S) <= end:
        yield vehicle_state(dive, t)
        k += 1


class NavigationWriter:
    """Writes a dive's navigation into an open bag, interleaved with the frames by time."""

    def __init__(self, writer: BagWriter, dive: Dive) -> None:
        self.writer = writer
        self.origin = dive.settings.nav_origin
        self._samples = nav_samples(dive)
        self._next: NavSample | None = next(self._samples, None)

    def until(self, t_ns: int | None = None) -> None:
        """Write every sample up to ``t_ns`` (all that are left when ``None``)."""
        while self._next is not None and (t_ns is None or self._next.t_ns <= t_ns):
            self._write(self._next)
            self._next = next(self._samples, None)

    def _write(self, s: NavSample) -> None:
        types = self.writer.store.types
        header = self.writer.header(s.t_ns, NAV_FRAME_ID)
        pose = types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=s.east, y=s.north, z=-s.depth),
            orientation=types["geometry_msgs/msg/Quaternion"](
                x=0.0, y=0.0, z=math.sin(s.yaw / 2), w=math.cos(s.yaw / 2)))
        zero = types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
        odom = types[ODOMETRY_TYPE](
            header=header, child_frame_id=VEHICLE_FRAME_ID,
            pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=pose,
                                                                covariance=np.zeros(36)),
            twist=types["geometry_msgs/msg/TwistWithCovariance"](
                twist=types["geometry_msgs/msg/Twist"](linear=zero, angular=zero),
                covariance=np.zeros(36)))
        self.writer.write_message(NAV_ODOM_TOPIC, s.t_ns, ODOMETRY_TYPE, odom)
        if self.origin is None:
            return
        lat, lon = to_latlon(np.array([s.east]), np.array([s.north]), self.origin)
        status = types["sensor_msgs/msg/NavSatStatus"]
        fix = types[FIX_TYPE](
            header=self.writer.header(s.t_ns, VEHICLE_FRAME_ID),
            status=status(status=status.STATUS_FIX, service=status.SERVICE_GPS),
            latitude=float(lat[0]), longitude=float(lon[0]), altitude=-s.depth,
            position_covariance=np.zeros(9),
            position_covariance_type=types[FIX_TYPE].COVARIANCE_TYPE_UNKNOWN)
        self.writer.write_message(NAV_FIX_TOPIC, s.t_ns, FIX_TYPE, fix)
