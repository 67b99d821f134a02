"""Synthetic dive generator speed: world build once, then frames/s on one core.

Frames of a dive differ (water, lamps, snow, JPEG link), so each timed call renders the next
frame of the dive; medians are over those frames. OpenCV is pinned to one thread. Besides
wall-clock times, the CPU time of the process is reported: on a shared machine it is the
better measure of what one core can do.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uwstego.training.synth.scene import render_seabed
from uwstego.training.synth.sequence import Dive
from uwstego.training.synth.settings import DiveSettings

from timing import emit, time_ms


def measure(width: int, height: int, frames: int, seed: int) -> dict[str, object]:
    t0 = time.perf_counter()
    dive = Dive(DiveSettings(seed=seed, frames=10_000, width=width, height=height,
                             segment_frames=10))
    build_s = time.perf_counter() - t0
    counter = itertools.count()
    cpu0 = time.process_time()
    whole = time_ms(lambda: dive.frame(next(counter)), repeats=frames, warmup=2)
    cpu_ms = (time.process_time() - cpu0) * 1000 / (frames + 2)
    poses = itertools.count()
    seabed = time_ms(lambda: render_seabed(dive.world, dive.camera,
                                           dive.path.pose(dive.time_s(next(poses)))),
                     repeats=frames, warmup=2)
    return {
        "world_px": dive.world.size_px,
        "dive_setup_s": round(build_s, 3),
        "frame_ms": whole,
        "frames_per_s": round(1000 / whole["median_ms"], 2),
        "frame_cpu_ms_mean": round(cpu_ms, 2),
        "frames_per_cpu_s": round(1000 / cpu_ms, 2),
        "seabed_projection_ms": seabed,
        "seabed_share_of_frame": round(seabed["median_ms"] / whole["median_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer frames, skip 1920x1080")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    frames = 20 if args.quick else 60
    result: dict[str, object] = {"threads": 1, "vga": measure(640, 480, frames, args.seed)}
    if not args.quick:
        result["full_hd"] = measure(1920, 1080, 10, args.seed)
    emit(result)


if __name__ == "__main__":
    main()
