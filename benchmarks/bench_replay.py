"""Replay throughput against the Segmenter alone on the same frames (target: >= 90 %).

    python benchmarks/bench_replay.py [--quick] [--bundle BUNDLE] [--size 320x240]

The Segmenter alone runs over frames already decoded in memory; the replay reads them from an
MCAP bag, decodes, segments, draws overlays and writes the output bag (and, in the ``with_video``
figures, the overlay video of a report). ``ratio`` uses the replay's steady-state throughput
(first frame read to last frame written); ``ratio_end_to_end`` also counts opening the bag and
starting the threads, a fixed cost that short benchmark bags exaggerate. Ratios are medians of
each repeat's ratio (a repeat's three runs follow each other, so slow changes in the load of a
shared machine cancel out); frame rates are medians over the repeats. ``colorize`` compares
:func:`edge.visualize.colorize` with numpy's gather (``palette[labels]``) at the frame size and
at 1080p. Without ``--bundle`` a tiny random bundle is exported first (needs the ``export``
extra). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from timing import time_ms

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.9


def frames(n: int, width: int, height: int) -> list[np.ndarray]:
    try:
        from training.synth.sequence import generate_dive
        from training.synth.settings import DiveSettings

        return [f.rgb for f in generate_dive(DiveSettings(frames=n, width=width, height=height,
                                                          seed=0))]
    except ImportError:
        sys.path.insert(0, str(REPO))
        from tests.support.media import scene

        return [scene(i, h=height, w=width) for i in range(n)]


def segmenter_fps(bundle: Path, images: list[np.ndarray], backend: str) -> float:
    from edge.segmenter import Segmenter

    seg = Segmenter(bundle, backend=backend)
    seg.segment(images[0])  # warm-up, as the replay's first frame is not timed apart either
    seg.reset()
    t0 = time.perf_counter()
    for rgb in images:
        seg.segment(rgb)
    return len(images) / (time.perf_counter() - t0)


def replay_fps(bundle: Path, bag: Path, work: Path, backend: str,
               report: bool) -> tuple[float, float]:
    """(steady-state frames/s, frames/s including opening the bag and starting the threads)."""
    from edge.replay.loop import ReplaySettings, replay

    out = Path(tempfile.mkdtemp(dir=work))
    result = replay(bag, bundle, ReplaySettings(backend=backend, progress=False),
                    out_bag=out / "out", report_dir=out / "report" if report else None)
    s = result.summary
    return float(s["throughput_fps"]), s["frames"]["processed"] / s["wall_s"]


def colorize_ms(width: int, height: int, repeats: int) -> dict[str, float]:
    """Median ms of numpy's gather and of ``colorize`` on the same labels, and the speed-up."""
    from edge.classes import default_classes
    from edge.visualize import colorize, palette

    lut = palette(default_classes(8))
    labels = np.random.default_rng(0).integers(0, 8, (height, width), dtype=np.uint8)
    gather = time_ms(lambda: lut[labels], repeats)["median_ms"]
    lookup = time_ms(lambda: colorize(labels, lut), repeats)["median_ms"]
    return {"gather_ms": round(gather, 3), "colorize_ms": round(lookup, 3),
            "speedup": round(gather / lookup, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few small frames, 3 repeats")
    parser.add_argument("--bundle", type=Path, help="bundle to run (default: a tiny export)")
    parser.add_argument("--size", default=None, help="frame size WxH (default 320x240, quick "
                        "128x96)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backend", default="onnxruntime")
    args = parser.parse_args()
    width, height = (int(v) for v in (args.size or ("128x96" if args.quick else "320x240"))
                     .split("x"))
    n = args.frames or (24 if args.quick else 100)
    repeats = args.repeats or (3 if args.quick else 5)

    from edge.bags import BagWriter
    from edge.bundle import load_bundle

    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        work = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            sys.path.insert(0, str(REPO))
            from tests.support.bundles import make_tiny_bundle

            bundle = make_tiny_bundle(work / "bundle", camera=(width, height))
        images = frames(n, width, height)
        bag = work / "dive"
        with BagWriter(bag) as writer:
            for i, rgb in enumerate(images):
                writer.write_image("/camera/image_raw", 1_700_000_000 * 10**9 + i * 10**8, rgb)

        alone, replayed, whole, with_video = [], [], [], []
        for _ in range(repeats):
            alone.append(segmenter_fps(bundle, images, args.backend))
            steady, end_to_end = replay_fps(bundle, bag, work, args.backend, report=False)
            replayed.append(steady)
            whole.append(end_to_end)
            with_video.append(replay_fps(bundle, bag, work, args.backend, report=True)[0])
        seg, rep, e2e, vid = (statistics.median(x) for x in (alone, replayed, whole,
                                                              with_video))
        ratio, ratio_e2e, ratio_vid = (
            statistics.median(r / a for r, a in zip(x, alone, strict=True))
            for x in (replayed, whole, with_video))
        meta = load_bundle(bundle).meta
        colors = {f"{width}x{height}": colorize_ms(width, height, 50),
                  "1920x1080": colorize_ms(1920, 1080, 5 if args.quick else 20)}
        print(json.dumps({
            "benchmark": "replay",
            "frames": n, "size": f"{width}x{height}", "repeats": repeats,
            "backend": args.backend, "bundle_classes": meta.num_classes,
            "backbone": meta.backbone,
            "segmenter_fps": round(seg, 2),
            "replay_fps": round(rep, 2),
            "replay_end_to_end_fps": round(e2e, 2),
            "replay_with_video_fps": round(vid, 2),
            "ratio": round(ratio, 3),
            "ratio_end_to_end": round(ratio_e2e, 3),
            "ratio_with_video": round(ratio_vid, 3),
            "target_ratio": TARGET,
            "meets_target": ratio >= TARGET,
            "meets_target_with_video": ratio_vid >= TARGET,
            "colorize": colors,
        }))


if __name__ == "__main__":
    main()
