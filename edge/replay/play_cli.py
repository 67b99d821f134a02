"""``uwstego play``: publish a bag onto ROS 2 with its recorded timing (needs rclpy)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uwstego.contract import QOS_PROFILES
from uwstego.replay.play import PlaySettings, parse_remap, play

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "play", help="publish a rosbag onto ROS 2 with its original timing",
        description="Like `ros2 bag play`, without ros2cli: publishes the stored messages "
                    "unchanged at the recorded pace, to drive the segmentation node from a "
                    "recording.")
    p.add_argument("bag", type=Path,
                   help="rosbag2 folder (MCAP or sqlite3), or a synth dive folder (its bag/)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--start", type=float, default=0.0, metavar="S",
                   help="skip the first S seconds of the bag")
    p.add_argument("--duration", type=float, metavar="S", help="play only S seconds")
    p.add_argument("--clock", type=float, nargs="?", const=40.0, default=0.0, metavar="HZ",
                   help="publish /clock with the bag time (default 40 Hz) for use_sim_time")
    p.add_argument("--topics", nargs="+", default=[], metavar="TOPIC",
                   help="play only these topics")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO",
                   help="publish a topic under another name, e.g. /camera/image_raw:=/image")
    p.add_argument("--qos", choices=QOS_PROFILES, default="reliable",
                   help="QoS of camera topics: reliable (reaches every subscriber) or "
                        "sensor_data (best effort)")
    p.add_argument("--qos-depth", type=int, default=10,
                   help="history depth (keep last) of every published topic")
    p.add_argument("--restamp", action="store_true",
                   help="stamp headers by the playback clock, like a live camera driver: a "
                        "message is stamped with the wall-clock time it is due (the start time "
                        "plus its bag offset divided by --rate), so stamps stay current at any "
                        "rate and an image and its camera_info keep equal stamps")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for a subscriber on every camera topic (not on "
                        "ground-truth or other image topics)")
    p.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[],
                   help="arguments for rclpy (e.g. --ros-args -r __ns:=/replay)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = PlaySettings(
        rate=args.rate, loop=args.loop, start_s=args.start, duration_s=args.duration,
        clock_hz=args.clock, topics=tuple(args.topics), remap=parse_remap(args.remap),
        qos=args.qos, qos_depth=args.qos_depth, restamp=args.restamp,
        wait_for_subscribers_s=args.wait_for_subscribers)
    ros_args = ["--ros-args", *args.ros_args] if args.ros_args else []
    stats = play(args.bag, settings, ros_args=ros_args)
    for topic, why in stats.skipped_topics.items():
        log.warning("not played: %s (%s)", topic, why)
    for problem in stats.damage:
        log.warning("damage: %s", problem)
    return 0
