"""The vehicle's track from a bag's navigation topic, and its position at any stamp.

Which topic (docs/survey.md §3): ``--nav-topic`` when given; else the bag's only
``sensor_msgs/NavSatFix`` topic (geographic positions, what a survey map wants), else its only
``nav_msgs/Odometry`` topic (a local frame). Several candidates of the kind chosen are refused
with their list, never guessed. Positions at frame stamps are interpolated linearly between the
two navigation messages around each stamp; a frame outside the track or in a gap longer than the
tolerance has no position, and is counted, never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from uwstego.bags import Bag, typestore
from uwstego.survey.geo import to_latlon, to_local

log = logging.getLogger(__name__)

ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
FIX_TYPE = "sensor_msgs/msg/NavSatFix"
NAV_TYPES = (FIX_TYPE, ODOMETRY_TYPE)  # in the order the default rule prefers them
DEFAULT_MAX_GAP_S = 2.0


def choose_nav_topic(topics: Mapping[str, str], wanted: str | None = None) -> str | None:
    """The navigation topic of a bag whose topics are ``{name: type}`` (see the module text);
    ``None`` when it has none; ValueError naming the candidates when the choice is not clear."""
    candidates = {t: m for t, m in topics.items() if m in NAV_TYPES}
    if wanted is not None:
        if wanted not in topics:
            raise ValueError(f"navigation topic {wanted} is not in the bag; its navigation "
                             f"topics: {', '.join(sorted(candidates)) or 'none'}")
        if topics[wanted] not in NAV_TYPES:
            raise ValueError(f"navigation topic {wanted} is a {topics[wanted]}, expected one of "
                             f"{', '.join(NAV_TYPES)}")
        return wanted
    for msgtype in NAV_TYPES:
        of_type = sorted(t for t, m in candidates.items() if m == msgtype)
        if len(of_type) > 1:
            raise ValueError(f"the bag has {len(of_type)} {msgtype} topics "
                             f"({', '.join(of_type)}): choose one with --nav-topic")
        if of_type:
            return of_type[0]
    return None


@dataclass(frozen=True)
class NavTrack:
    """Navigation samples sorted by header stamp. Positions are metres east/north of
    ``origin`` (a fix track: the first fix; an odometry track: its own frame's origin, and
    ``origin`` is ``None``) and depth in metres, positive down."""

    topic: str
    msgtype: str
    t_ns: np.ndarray   # int64
    east: np.ndarray
    north: np.ndarray
    depth: np.ndarray
    origin: tuple[float, float] | None = None
    unusable: int = 0  # messages without a position (a fix with status "no fix", NaN)

    @property
    def geographic(self) -> bool:
        return self.origin is not None

    def __len__(self) -> int:
        return int(self.t_ns.size)

    def at(self, stamps_ns: np.ndarray, max_gap_s: float = DEFAULT_MAX_GAP_S) -> Positions:
        """Positions at ``stamps_ns``, interpolated (see the module text)."""
        stamps = np.asarray(stamps_ns, dtype=np.int64)
        if len(self) == 0:
            nan = np.full(stamps.shape, np.nan)
            return Positions(nan, nan.copy(), nan.copy(), np.zeros(stamps.shape, bool), self.origin)
        # Relative times in float seconds keep nanosecond stamps exact enough (1e9 s range).
        t0 = self.t_ns[0]
        track_s = (self.t_ns - t0) / 1e9
        frame_s = (stamps - t0) / 1e9
        right = np.searchsorted(track_s, frame_s, side="left")
        exact = (right < len(self)) & (track_s[np.minimum(right, len(self) - 1)] == frame_s)
        inside = (right > 0) & (right < len(self))
        gap = np.full(stamps.shape, np.inf)
        gap[inside] = track_s[right[inside]] - track_s[right[inside] - 1]
        valid = exact | (inside & (gap <= max_gap_s))
        coords = [np.where(valid, np.interp(frame_s, track_s, values), np.nan)
                  for values in (self.east, self.north, self.depth)]
        return Positions(*coords, valid=valid, origin=self.origin)


@dataclass(frozen=True)
class Positions:
    """Positions of a series of frames; NaN where :attr:`valid` is False."""

    east: np.ndarray
    north: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    origin: tuple[float, float] | None = None

    def latlon(self) -> tuple[np.ndarray, np.ndarray]:
        if self.origin is None:
            raise ValueError("these positions are in a local frame: no latitude/longitude")
        return to_latlon(self.east, self.north, self.origin)

    def distance_m(self) -> np.ndarray:
        """Horizontal distance travelled up to each frame, along the frames with a position
        (constant across frames without one)."""
        east, north = self.east, self.north
        steps = np.zeros(east.shape)
        known = np.flatnonzero(self.valid)
        if known.size > 1:
            steps[known[1:]] = np.hypot(np.diff(east[known]), np.diff(north[known]))
        return np.cumsum(steps)


def read_navigation(bag: Bag, topic: str | None = None) -> NavTrack | None:
    """The track of ``bag``'s navigation topic (:func:`choose_nav_topic`), or ``None`` when the
    bag has none; ValueError for an unclear choice or a topic without one usable sample."""
    chosen = choose_nav_topic(bag.topics, topic)
    if chosen is None:
        return None
    msgtype = bag.topics[chosen]
    store = typestore()
    stamps, east, north, depth = [], [], [], []
    unusable = 0
    for raw in bag.messages((chosen,)):
        msg = store.deserialize_cdr(raw.data, msgtype)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if msgtype == ODOMETRY_TYPE:
            p = msg.pose.pose.position
            values = (p.x, p.y, -p.z)
        else:
            # status -1 is STATUS_NO_FIX: the receiver says the position is not to be used.
            values = ((np.nan,) * 3 if msg.status.status < 0
                      else (msg.longitude, msg.latitude, -msg.altitude))
        if not np.all(np.isfinite(values)):
            unusable += 1
            continue
        stamps.append(stamp)
        east.append(values[0])
        north.append(values[1])
        depth.append(values[2])
    if not stamps:
        raise ValueError(f"navigation topic {chosen} holds no usable position "
                         f"({unusable} unusable messages)")
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    t_ns = np.asarray(stamps, dtype=np.int64)[order]
    a, b, d = (np.asarray(v, dtype=np.float64)[order] for v in (east, north, depth))
    origin = None
    if msgtype == FIX_TYPE:
        origin = (float(b[0]), float(a[0]))  # (lat, lon) of the first fix
        a, b = to_local(b, a, origin)
    if unusable:
        log.warning("%s: %d navigation messages without a position were left out", chosen,
                    unusable)
    return NavTrack(chosen, msgtype, t_ns, a, b, d, origin, unusable)
