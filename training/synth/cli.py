"""``uwstego synth``: render a synthetic underwater dive with exact labels."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uwstego.cli import HelpFormatter
from uwstego.image_size import Size
from uwstego.survey.geo import check_origin
from uwstego.training.synth.settings import HOLD_OUT_CLASSES, JERLOV_TYPES, DiveSettings
from uwstego.training.synth.writer import write_dive

log = logging.getLogger(__name__)


def _size(text: str) -> Size:
    try:
        return Size.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _water_types(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in JERLOV_TYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown water types {unknown}; choose from "
                                         f"{','.join(JERLOV_TYPES)}")
    return names


def _latlon(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(v) for v in text.split(","))
        origin = (lat, lon)
        check_origin(origin)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LAT,LON in degrees ({exc})") from None
    return origin


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", formatter_class=HelpFormatter,
        help="render a synthetic underwater dive with exact ground truth",
        description="Render a seeded synthetic dive (seabed, fish, divers, debris, cables under "
                    "physically based water, light, snow and sensor degradation) to PNG "
                    "folders and/or a rosbag2. Rerunning into the same folder resumes.")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--frames", type=int, default=100, help="frames in the dive")
    parser.add_argument("--size", type=_size, default=Size(640, 480),
                        help="camera frame size WxH (default 640x480)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the dive: same seed, same bytes")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="frame rate: timestamps and motion per frame")
    parser.add_argument("--format", choices=["folders", "bag", "both"], default="folders",
                        help="PNG folders (images/, labels/, range/), a rosbag2 in OUT/bag, "
                             "or both")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap",
                        help="rosbag2 storage plugin of the bag")
    parser.add_argument("--compressed", action="store_true",
                        help="bag images as JPEG CompressedImage instead of raw rgb8")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality for --compressed")
    parser.add_argument("--segment-frames", type=int, default=50,
                        help="redraw water and light every N frames (0: once per dive)")
    parser.add_argument("--water-types", type=_water_types, default=JERLOV_TYPES,
                        help="comma-separated Jerlov types to draw from (default: all)")
    parser.add_argument("--clean", action="store_true", help="no water degradation")
    parser.add_argument("--no-range", action="store_true", help="skip the range PNGs")
    parser.add_argument("--hold-out", choices=HOLD_OUT_CLASSES, default="",
                        help="render the dive without this actor class (train a model that "
                             "has never seen it, then measure novelty on a dive with it)")
    parser.add_argument("--nav-origin", type=_latlon, metavar="LAT,LON",
                        help="latitude,longitude of the dive's origin: the bag also gets a "
                             "sensor_msgs/NavSatFix topic /nav/fix (nav_msgs/Odometry on "
                             "/nav/odom is always written)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = DiveSettings(seed=args.seed, frames=args.frames, width=args.size.width,
                            height=args.size.height,
                            fps=args.fps, segment_frames=args.segment_frames,
                            water_types=args.water_types, degrade=not args.clean,
                            hold_out=args.hold_out, nav_origin=args.nav_origin)
    report = write_dive(settings, args.out, folders=args.format in ("folders", "both"),
                        bag=args.format in ("bag", "both"), storage=args.storage,
                        compressed=args.compressed, quality=args.quality,
                        save_range=not args.no_range, progress=True)
    log.info("dive in %s: %d frames rendered, %d reused, %s in %.1f s", report.out,
             report.rendered, report.reused, "complete" if report.complete else "INCOMPLETE",
             report.seconds)
    return 0 if report.complete else 1
