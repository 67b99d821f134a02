"""``uwstego play``: publish a bag's topics onto ROS 2 with their recorded timing.

A small ``ros2 bag play`` for machines without ros2cli (the PyPI rclpy wheels) and for driving
the segmentation node from a recording. Messages go out as the CDR bytes stored in the bag
(``Publisher.publish(bytes)``, available since Humble), so nothing is deserialised in Python and
headers are exactly as recorded; ``restamp`` maps the header stamps onto the playback clock
(:class:`PlaybackClock`: the wall-clock time a bag time is played at, at any ``rate``), so stamps
stay current and an image and its camera_info keep equal stamps, as a camera driver would stamp
them.

rclpy is imported only when playing, so the rest of ``edge`` runs without ROS.
"""

from __future__ import annotations

import importlib
import logging
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uwstego.bags import CAMERA_TYPES, camera_topics, open_bag, typestore
from uwstego.contract import QOS_PROFILES

log = logging.getLogger(__name__)

CLOCK_TOPIC = "/clock"
HEADER_TYPE = "std_msgs/msg/Header"


@dataclass(frozen=True)
class PlaySettings:
    rate: float = 1.0
    loop: bool = False
    start_s: float = 0.0  # offset from the bag's first message
    duration_s: float | None = None
    clock_hz: float = 0.0  # > 0: publish /clock at this rate, like `ros2 bag play --clock`
    topics: tuple[str, ...] = ()  # empty: every topic
    remap: Mapping[str, str] = field(default_factory=dict)
    qos: str = "reliable"  # for camera topics; everything else is reliable, depth 10
    qos_depth: int = 10
    restamp: bool = False
    wait_for_subscribers_s: float = 0.0  # wait up to this long for a subscriber per camera topic

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"--rate must be > 0, got {self.rate}")
        if self.start_s < 0 or (self.duration_s is not None and self.duration_s <= 0):
            raise ValueError("--start must be >= 0 and --duration > 0")
        if self.qos not in QOS_PROFILES:
            raise ValueError(f"--qos must be one of {QOS_PROFILES}, got {self.qos!r}")
        if self.clock_hz < 0:
            raise ValueError(f"--clock rate must be >= 0, got {self.clock_hz}")


@dataclass
class PlayStats:
    published: int = 0
    loops: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why
    damage: list[str] = field(default_factory=list)


def parse_remap(items: list[str] | None) -> dict[str, str]:
    """``["/a:=/b", ...]`` -> ``{"/a": "/b"}``."""
    out = {}
    for item in items or []:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise ValueError(f"remap {item!r}: expected FROM:=TO, e.g. /camera/image_raw:=/image")
        out[src] = dst
    return out


def message_class(msgtype: str) -> type:
    """``"sensor_msgs/msg/Image"`` -> the rclpy message class (rosidl_runtime_py is not on PyPI)."""
    package, _, name = msgtype.rpartition("/")
    try:
        return getattr(importlib.import_module(package.replace("/", ".")), name)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"message type {msgtype} is not installed ({exc})") from exc


def _header_first(msgtype: str) -> bool:
    fields = typestore().fielddefs.get(msgtype)
    return bool(fields and fields[1] and fields[1][0][1][1] == HEADER_TYPE)


@dataclass(frozen=True)
class PlaybackClock:
    """A playback that plays bag time ``start_ns`` at wall-clock time ``wall_ns`` (ns since the
    epoch) and runs at ``rate``: :meth:`wall` is when a bag time is played."""

    start_ns: int
    wall_ns: int
    rate: float

    def wall(self, bag_ns: int) -> int:
        """The wall-clock time (ns) at which bag time ``bag_ns`` is played."""
        return self.wall_ns + round((bag_ns - self.start_ns) / self.rate)


def restamped(raw: bytes, new_stamp: Callable[[int], int]) -> bytes:
    """CDR bytes of a message whose first field is a Header, with the stamp replaced by
    ``new_stamp(stamp)`` (both in ns).

    The stamp (int32 sec, uint32 nanosec) follows the 4-byte encapsulation header directly.
    """
    little = raw[1] & 1  # representation id 0x0001 / 0x0003: little-endian CDR
    fmt = "<iI" if little else ">iI"
    sec, nanosec = struct.unpack_from(fmt, raw, 4)
    total = max(0, new_stamp(sec * 1_000_000_000 + nanosec))
    out = bytearray(raw)
    struct.pack_into(fmt, out, 4, total // 1_000_000_000, total % 1_000_000_000)
    return bytes(out)


class Player:
    """Publishes one bag on a node of its own; see :func:`play`."""

    def __init__(self, bag: str | Path, settings: PlaySettings, node: Any) -> None:
        self.source = open_bag(bag)
        self.bag = self.source.path
        self.s = settings
        self.node = node
        self.stats = PlayStats(damage=self.source.damage)  # the same list: grows as it reads
        self._publishers: dict[str, Any] = {}
        self._clock_pub: Any = None
        self._restamp: dict[str, bool] = {}
        if settings.clock_hz > 0:
            from rclpy.qos import QoSProfile, ReliabilityPolicy
            from rosgraph_msgs.msg import Clock

            # rclpy's TimeSource subscribes best effort, depth 1 (as rosbag2 publishes it).
            self._clock_pub = node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
            self._clock_cls = Clock

    def _qos(self, msgtype: str) -> Any:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        if msgtype in CAMERA_TYPES and self.s.qos == "sensor_data":
            return QoSProfile(depth=self.s.qos_depth, history=HistoryPolicy.KEEP_LAST,
                              reliability=qos_profile_sensor_data.reliability,
                              durability=qos_profile_sensor_data.durability)
        return QoSProfile(depth=self.s.qos_depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE)

    def _publisher(self, topic: str, msgtype: str) -> Any:
        if topic in self._publishers:
            return self._publishers[topic]
        publisher = None
        try:
            cls = message_class(msgtype)
            publisher = self.node.create_publisher(cls, self.s.remap.get(topic, topic),
                                                   self._qos(msgtype))
            self._restamp[topic] = self.s.restamp and _header_first(msgtype)
        except LookupError as exc:
            self.stats.skipped_topics[topic] = str(exc)
            log.warning("not playing %s: %s", topic, exc)
        self._publishers[topic] = publisher
        return publisher

    def prepare(self) -> None:
        """Create every publisher up front and wait for subscribers, as configured."""
        found = self.source.topics
        missing = [t for t in self.s.topics if t not in found]
        if missing:
            raise ValueError(f"topics {missing} are not in {self.bag}; it has "
                             f"{', '.join(sorted(found)) or 'none'}")
        for topic, msgtype in sorted(found.items()):
            if not self.s.topics or topic in self.s.topics:
                self._publisher(topic, msgtype)
        self._wait_for_subscribers()

    def _wait_for_subscribers(self) -> None:
        """Wait for the camera topics only (the rule of :mod:`uwstego.bags.topics`): nothing needs
        to subscribe to ground truth or other image topics before playing starts."""
        if self.s.wait_for_subscribers_s <= 0:
            return
        wanted = camera_topics(self.source)
        cameras = [p for t, p in self._publishers.items() if p is not None and t in wanted]
        deadline = time.monotonic() + self.s.wait_for_subscribers_s
        while any(p.get_subscription_count() == 0 for p in cameras):
            if time.monotonic() > deadline:
                log.warning("no subscriber on some camera topics after %.1f s; playing anyway",
                            self.s.wait_for_subscribers_s)
                return
            time.sleep(0.05)

    def _publish_clock(self, bag_ns: int) -> None:
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = divmod(max(0, bag_ns), 1_000_000_000)
        self._clock_pub.publish(msg)

    def _wait_until(self, due: float, bag_ns_at: Callable[[float], int]) -> None:
        """Sleep until ``due`` (monotonic), publishing /clock at its rate meanwhile."""
        period = 1.0 / self.s.clock_hz if self._clock_pub is not None else None
        while True:
            left = due - time.monotonic()
            if period is None:
                if left > 0:
                    time.sleep(left)
                return
            self._publish_clock(bag_ns_at(time.monotonic()))
            if left <= 0:
                return
            time.sleep(min(left, period))

    def play_once(self) -> None:
        first, end = self.source.span()
        start_ns = first + int(self.s.start_s * 1e9)
        stop_ns = start_ns + int(self.s.duration_s * 1e9) if self.s.duration_s else None
        if start_ns >= end:
            raise ValueError(f"--start {self.s.start_s} s is past the end of {self.bag} "
                             f"({(end - first) / 1e9:.2f} s long)")
        wall0 = time.monotonic()
        # Stamps follow the playback clock, so that at --rate 0.5 a frame played 10 s after the
        # start is stamped 10 s after it, not 5 s (one constant offset drifts at any rate but 1).
        clock = PlaybackClock(start_ns, time.time_ns(), self.s.rate)

        def bag_ns_at(now: float) -> int:
            return start_ns + int((now - wall0) * self.s.rate * 1e9)

        topics = set(self.s.topics) if self.s.topics else None
        for msg in self.source.messages(topics, start_ns, stop_ns):
            publisher = self._publisher(msg.topic, msg.msgtype)
            if publisher is None:
                continue
            self._wait_until(wall0 + (msg.t_ns - start_ns) / 1e9 / self.s.rate, bag_ns_at)
            data = restamped(msg.data, clock.wall) if self._restamp[msg.topic] else msg.data
            publisher.publish(data)
            self.stats.published += 1
        self.stats.loops += 1

    def run(self) -> PlayStats:
        self.prepare()
        while True:
            self.play_once()
            if not self.s.loop:
                self._flush()
                return self.stats

    def _flush(self, timeout_s: float = 2.0) -> None:
        """Wait until reliable subscribers hold every message: exiting at once can lose the last."""
        from rclpy.duration import Duration

        for topic, publisher in self._publishers.items():
            if publisher is not None and not publisher.wait_for_all_acked(
                    Duration(nanoseconds=int(timeout_s * 1e9))):
                log.warning("%s: not every subscriber acknowledged the last messages", topic)


def play(bag: str | Path, settings: PlaySettings | None = None,
         ros_args: list[str] | None = None) -> PlayStats:
    """Publish ``bag`` on a node of its own until done (or Ctrl-C, which is re-raised)."""
    import rclpy
    from rclpy.node import Node

    context = rclpy.Context()
    rclpy.init(args=["uwstego_play", *(ros_args or [])], context=context)
    node = None
    try:
        node = Node("uwstego_play", context=context)
        player = Player(bag, settings or PlaySettings(), node)
        stats = player.run()
        log.info("published %d messages from %s (%d loop(s))", stats.published, bag, stats.loops)
        return stats
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
