"""Replay throughput against the Segmenter alone on the same frames (target: >= 90 %).

    python benchmarks/bench_replay.py [--quick] [--bundle BUNDLE] [--backend onnxruntime]

Two configurations, measured in the same run:

``deployment`` (the headline): the model of ``make demo`` (``tools/demo.py``: DINO ViT-S/8 with
random weights - speed does not depend on them -, camera 640x480, network 224x168, one cluster
per synthetic class) exported by the real exporter, replaying a synthetic dive written as the
demo writes it (camera, camera_info and ground-truth topics). ``replay`` writes the output bag;
``replay_demo`` is the demo's own call: output bag, report with the overlay video and scores
against the ground truth. ``--bundle`` runs another bundle (e.g. a TensorRT one on the vehicle)
on a dive at its camera size instead of exporting.

``stress_tiny``: a tiny random ViT on 320x240 frames, where inference takes so little time that
the replay's own per-frame work (reading, overlays, output bag, figures; the video) shows. It is
reported as that work's cost in ms per frame and as ratios; it is not what a user sees.

The Segmenter alone runs over the frames already decoded in memory, before and after every
replay, and each replay is compared with the mean of the two, so that a drift in the speed of a
shared machine cancels out. Replay rates are steady state (first frame read to last frame
written); ``ratio_end_to_end`` also counts opening the bag and starting the threads. Ratios and
overheads are medians of the per-replay figures (``ratio_range``: their spread), frame rates
medians over the runs; ``load_1min`` (start, end) says how busy the machine was, though not what
other virtual machines on the same host do. ``colorize`` compares :func:`uwstego.visualize.colorize`
with numpy's gather (``palette[labels]``). Without ``--bundle`` this needs the ``export`` extra
(torch). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from timing import emit, time_ms

if TYPE_CHECKING:
    from uwstego.image_size import Size

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.9
STRESS_SIZE = (320, 240)
T0_NS = 1_700_000_000 * 10**9


@dataclass(frozen=True)
class Variant:
    """One way of replaying: what the replay writes besides its figures."""

    name: str
    out_bag: bool = True
    report: bool = False  # the HTML report with the overlay video
    truth: bool = False  # scores against the bag's ground-truth topic


def segmenter_fps(bundle: Path, images: Sequence[np.ndarray], backend: str) -> float:
    from uwstego.segmenter import Segmenter

    seg = Segmenter(bundle, backend=backend)
    seg.segment(images[0])  # warm-up, as the replay warms up before timing
    seg.reset()
    t0 = time.perf_counter()
    for rgb in images:
        seg.segment(rgb)
    return len(images) / (time.perf_counter() - t0)


def replay_fps(bundle: Path, bag: Path, work: Path, backend: str,
               variant: Variant) -> tuple[float, float]:
    """(steady-state frames/s, frames/s including opening the bag and starting the threads)."""
    from uwstego.replay.loop import ReplaySettings, replay

    settings = ReplaySettings(backend=backend, progress=False)
    if variant.truth:
        from uwstego.contract import IMAGE_TOPIC, LABELS_GT_TOPIC
        from uwstego.training.synth import CLASS_NAMES

        # As tools/demo.py calls it.
        settings = replace(settings, topic=IMAGE_TOPIC, gt_topic=LABELS_GT_TOPIC,
                           gt_names=CLASS_NAMES)
    out = Path(tempfile.mkdtemp(dir=work))
    result = replay(bag, bundle, settings, out_bag=out / "out" if variant.out_bag else None,
                    report_dir=out / "report" if variant.report else None)
    s = result.summary
    return float(s.throughput_fps or 0.0), s.frames.processed / s.wall_s


def compare(bundle: Path, bag: Path, images: Sequence[np.ndarray], work: Path, backend: str,
            variants: Sequence[Variant], repeats: int) -> dict[str, Any]:
    """Frame rates, ratios and per-frame overheads of each variant against the Segmenter.

    The Segmenter alone runs before and after every replay, and each replay is compared with
    the mean of the two, so that a drift in the speed of a shared machine cancels out.
    """
    alone: list[float] = []
    steady: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
    whole: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
    for _ in range(repeats):
        before = segmenter_fps(bundle, images, backend)
        alone.append(before)
        for v in variants:
            fps, end_to_end = replay_fps(bundle, bag, work, backend, v)
            after = segmenter_fps(bundle, images, backend)
            alone.append(after)
            reference = (before + after) / 2
            steady[v.name].append((fps, reference))
            whole[v.name].append((end_to_end, reference))
            before = after

    def ratio(pairs: list[tuple[float, float]]) -> float:
        return round(statistics.median(r / a for r, a in pairs), 3)

    def overhead_ms(pairs: list[tuple[float, float]]) -> float:
        return round(statistics.median(1e3 / r - 1e3 / a for r, a in pairs), 2)

    out: dict[str, Any] = {"segmenter_fps": round(statistics.median(alone), 2),
                           "segmenter_ms_per_frame": round(1e3 / statistics.median(alone), 2)}
    for v in variants:
        out[v.name] = {"fps": round(statistics.median(r for r, _ in steady[v.name]), 2),
                       "ratio": ratio(steady[v.name]),
                       "ratio_range": [round(f(r / a for r, a in steady[v.name]), 3)
                                       for f in (min, max)],
                       "ratio_end_to_end": ratio(whole[v.name]),
                       "overhead_ms_per_frame": overhead_ms(steady[v.name])}
    return out


def export_demo_bundle(out: Path) -> Path:
    """``make demo``'s model (random weights) through the real exporter."""
    sys.path.insert(0, str(REPO))
    from tests.support.bundles import make_tiny_bundle
    from tools.demo import FULL
    from uwstego.image_size import Size
    from uwstego.training.synth import CLASSES

    camera, network = (Size.parse(s).dsize for s in (FULL.camera, FULL.network))
    return make_tiny_bundle(out, camera=camera, network=network, k=len(CLASSES),
                            backbone=FULL.backbone)


def demo_dive(out: Path, frames: int, camera: Size) -> tuple[Path, list[np.ndarray]]:
    """A synthetic dive bag written as the demo writes it, and its decoded frames."""
    from uwstego.bags import iter_bag_images
    from uwstego.contract import IMAGE_TOPIC
    from uwstego.training.synth import DiveSettings
    from uwstego.training.synth.writer import write_dive

    settings = DiveSettings(seed=7, frames=frames, width=camera.width, height=camera.height,
                             fps=10.0)
    bag = write_dive(settings, out, folders=False, bag=True).bag
    assert bag is not None
    return bag, [f.rgb for f in iter_bag_images(bag, IMAGE_TOPIC)]


def deployment(work: Path, bundle: Path | None, frames: int, repeats: int,
               backend: str) -> dict[str, Any]:
    from uwstego.bundle import load_bundle

    t0 = time.perf_counter()
    bundle = bundle or export_demo_bundle(work / "demo_bundle")
    export_s = time.perf_counter() - t0
    meta = load_bundle(bundle).meta
    bag, images = demo_dive(work / "demo_dive", frames, meta.camera)
    result = {"note": "make demo's model and sizes (random weights); replay_demo = output bag "
                      "+ report with video + ground-truth scores, as the demo runs it",
              "backbone": meta.backbone, "camera": str(meta.camera),
              "network": str(meta.network),
              "classes": meta.num_classes, "frames": len(images), "repeats": repeats,
              "export_s": round(export_s, 1)}
    result.update(compare(bundle, bag, images, work, backend,
                          [Variant("replay"), Variant("replay_demo", report=True, truth=True)],
                          repeats))
    return result


def stress_tiny(work: Path, size: tuple[int, int], frames: int, repeats: int,
                backend: str) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from tests.support.bundles import can_export, make_tiny_bundle
    from uwstego.bags import BagWriter
    from uwstego.training.synth.sequence import generate_dive
    from uwstego.training.synth.settings import DiveSettings

    if not can_export():
        return {"skipped": "exporting the tiny model needs torch (the export extra)"}
    bundle = make_tiny_bundle(work / "tiny_bundle", camera=size)
    images = [f.rgb for f in generate_dive(DiveSettings(frames=frames, width=size[0],
                                                        height=size[1], seed=0))]
    bag = work / "tiny_dive"
    with BagWriter(bag) as writer:
        for i, rgb in enumerate(images):
            writer.write_image("/camera/image_raw", T0_NS + i * 10**8, rgb)
    result = {"note": "stress case, not a user's figure: tiny random ViT, so the replay's own "
                      "per-frame work shows; with_video adds the report's overlay MP4",
              "backbone": "tiny_vit8", "camera": f"{size[0]}x{size[1]}", "frames": frames,
              "repeats": repeats}
    result.update(compare(bundle, bag, images, work, backend,
                          [Variant("replay"), Variant("with_video", report=True)], repeats))
    return result


def colorize_ms(width: int, height: int, repeats: int) -> dict[str, float]:
    """Median ms of numpy's gather and of ``colorize`` on the same labels, and the speed-up."""
    from uwstego.classes import default_classes
    from uwstego.visualize import colorize, palette

    lut = palette(default_classes(8))
    labels = np.random.default_rng(0).integers(0, 8, (height, width), dtype=np.uint8)
    gather = time_ms(lambda: lut[labels], repeats)["median_ms"]
    lookup = time_ms(lambda: colorize(labels, lut), repeats)["median_ms"]
    return {"gather_ms": round(gather, 3), "colorize_ms": round(lookup, 3),
            "speedup": round(gather / lookup, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller frames, "
                        "2-3 repeats")
    parser.add_argument("--bundle", type=Path, help="deployment bundle to run (default: export "
                        "make demo's model with random weights)")
    parser.add_argument("--frames", type=int, default=None, help="deployment frames")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--skip-stress", action="store_true", help="deployment figures only")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        work = Path(tmp)
        deploy = deployment(work, args.bundle, args.frames or (6 if args.quick else 20),
                            repeats, args.backend)
        stress = None
        if not args.skip_stress:
            stress = stress_tiny(work, (128, 96) if args.quick else STRESS_SIZE,
                                 24 if args.quick else 80, repeats + 1, args.backend)
    headline = deploy["replay_demo"]["ratio"]
    emit({
        "benchmark": "replay", "backend": args.backend, "target_ratio": TARGET,
        "ratio": headline, "meets_target": headline >= TARGET,
        "deployment": deploy,
        "stress_tiny": stress,
        "colorize": {f"{w}x{h}": colorize_ms(w, h, 5 if args.quick and w > 1000 else 20)
                     for w, h in ((640, 480), (1920, 1080))},
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
    })


if __name__ == "__main__":
    main()
