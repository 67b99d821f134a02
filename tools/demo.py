"""`make demo`: the whole product on a synthetic dive, on the CPU, in one command.

1. render a synthetic dive with exact ground truth as a rosbag2 (``uwstego synth``);
2. train the STEGO head on it (``uwstego train``: DINO ViT-S/8, feature cache, KNN, k-means);
3. export the fused ONNX bundle, validated against PyTorch (``export-trt``);
4. replay the dive through the bundle with ONNX Runtime and write the report with mIoU against
   the generator's labels (``uwstego replay``).

Every step keeps its output under ``--out`` and is skipped on a second run when its output is
complete and newer than its input, so a rerun only redoes what changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uwstego.bundle import BundleError, load_bundle
from uwstego.cli import configure_logging
from uwstego.contract import IMAGE_TOPIC, LABELS_GT_TOPIC
from uwstego.export.pipeline import export_bundle
from uwstego.export.settings import ExportSettings
from uwstego.image_size import Size
from uwstego.replay.loop import ReplaySettings, replay
from uwstego.replay.summary import SUMMARY_FILE, ReplaySummary, read_summary
from uwstego.training.backbones import OFFICIAL_WEIGHTS, download_weights, weights_hint
from uwstego.training.backbones.build import DEFAULT_CACHE_DIR
from uwstego.training.pipeline import run_training
from uwstego.training.settings import PipelineSettings, TrainSettings
from uwstego.training.synth import CLASS_NAMES, CLASSES, DiveSettings
from uwstego.training.synth.writer import write_dive

log = logging.getLogger("demo")



@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: the default fits 15 minutes on 2 CPU cores."""

    backbone: str
    frames: int
    camera: str
    network: str
    resolution: int
    steps: int
    batch_size: int
    replay_every: int


FULL = DemoSize(backbone="dino_vits8", frames=240, camera="640x480", network="224x168",
                resolution=224, steps=200, batch_size=8, replay_every=1)
TINY = DemoSize(backbone="tiny_vit8", frames=24, camera="128x96", network="64x48",
                resolution=64, steps=20, batch_size=4, replay_every=1)


def find_weights(backbone: str, explicit: Path | None, download: bool) -> Path | None:
    """The official weights file, from ``--weights``, the cache folders, or a download."""
    if explicit is not None:
        if not explicit.is_file():
            raise FileNotFoundError(f"--weights {explicit} does not exist")
        return explicit
    url = OFFICIAL_WEIGHTS.get(backbone)
    if url is None:
        return None
    name = url.rsplit("/", 1)[-1]
    folders = [Path(p) for p in (os.environ.get("UWSTEGO_WEIGHTS_DIR"),) if p]
    for folder in [*folders, DEFAULT_CACHE_DIR, Path("weights")]:
        if (folder / name).is_file():
            return folder / name
    if download:
        return download_weights(backbone)
    return None


def is_newer(output: Path, *inputs: Path) -> bool:
    return output.exists() and all(output.stat().st_mtime >= i.stat().st_mtime for i in inputs)


def timed(stage: str, timings: dict[str, float], fn: Callable[[], Any]) -> Any:
    log.info("=== %s", stage)
    t0 = time.perf_counter()
    result = fn()
    timings[stage] = round(time.perf_counter() - t0, 1)
    return result


def run_demo(out: Path, size: DemoSize, weights: Path | None, seed: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    dive_dir, train_dir, bundle_dir = out / "dive", out / "train", out / "bundle"
    report_dir, replay_bag = out / "report", out / "replay_bag"
    camera = Size.parse(size.camera)
    dive = DiveSettings(seed=seed, frames=size.frames, width=camera.width, height=camera.height,
                        fps=10.0)
    timings_note = "reused" if (dive_dir / "bag").exists() else "rendered"
    timed(f"1/4 synthetic dive ({size.frames} frames {size.camera}, {timings_note})", timings,
          lambda: write_dive(dive, dive_dir, folders=False, bag=True, progress=True))
    bag = dive_dir / "bag"

    model = train_dir / "model.pt"
    if model.is_file():
        log.info("reusing %s", model)
    else:
        pipeline = PipelineSettings(backbone=size.backbone, weights=weights,
                                    resolution=size.resolution, crop_type="full",
                                    topic=IMAGE_TOPIC, allow_random_weights=True)
        train = TrainSettings(steps=size.steps, batch_size=size.batch_size,
                              clusters=len(CLASSES), seed=seed,
                              checkpoint_every=max(size.steps // 4, 1))
        timed("2/4 train", timings, lambda: run_training(
            [bag], train_dir, pipeline, train, resume=(train_dir / "state.pt").exists()))

    try:
        fresh_bundle = is_newer(bundle_dir / "bundle.json", model) and load_bundle(bundle_dir)
    except BundleError:
        fresh_bundle = False
    if fresh_bundle:
        log.info("reusing %s", bundle_dir)
    else:
        settings = ExportSettings(camera=size.camera, network=size.network, engine="auto")
        timed("3/4 export", timings, lambda: export_bundle(model, bundle_dir, settings))

    summary_file = report_dir / SUMMARY_FILE
    if is_newer(summary_file, bundle_dir / "bundle.json"):
        log.info("reusing %s", report_dir)
        summary = read_summary(summary_file)
    else:
        for stale in (report_dir, replay_bag):
            shutil.rmtree(stale, ignore_errors=True)
        settings = ReplaySettings(topic=IMAGE_TOPIC, gt_topic=LABELS_GT_TOPIC,
                                  backend="onnxruntime",
                                  every=size.replay_every, gt_names=CLASS_NAMES)
        result = timed("4/4 replay", timings, lambda: replay(
            bag, bundle_dir, settings, out_bag=replay_bag, report_dir=report_dir))
        summary = result.summary
    return {"timings_s": timings, "summary": summary.to_dict(series=False),
            "headline": headline(summary),
            "paths": {"dive": str(bag), "model": str(model), "bundle": str(bundle_dir),
                      "report": str(report_dir / "index.html"), "replay_bag": str(replay_bag)}}


def headline(summary: ReplaySummary) -> dict[str, Any]:
    """The few figures worth printing from the replay summary."""
    model = summary.primary
    truth = model.ground_truth.scores if model.ground_truth else None
    return {
        "frames_processed": summary.frames.processed,
        "mIoU_percent": truth.mIoU if truth else None,
        "accuracy_percent": truth.accuracy if truth else None,
        "latency_ms_p50": model.figures.latency_ms.p50,
        "latency_ms_p95": model.figures.latency_ms.p95,
        "replay_frames_per_s": summary.throughput_fps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--weights", type=Path, help="official DINO ViT-S/8 weights file")
    parser.add_argument("--download", action="store_true",
                        help="download the official weights if they are not found locally")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny random ViT at 128x96 (what the test suite runs)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    configure_logging(verbose=False)
    size = TINY if args.tiny else FULL
    weights = find_weights(size.backbone, args.weights, args.download)
    if weights is None and size.backbone in OFFICIAL_WEIGHTS:
        log.warning("\n%s\nNO OFFICIAL WEIGHTS FOUND: the demo trains on a RANDOMLY INITIALISED "
                    "%s. The pipeline runs end to end, but the clusters and the mIoU mean "
                    "nothing.\n%s, or put the file in %s and run `make demo` again.\n%s",
                    "!" * 78, size.backbone, weights_hint(size.backbone), DEFAULT_CACHE_DIR,
                    "!" * 78)
    t0 = time.perf_counter()
    result = run_demo(args.out, size, weights, args.seed)
    result["weights"] = str(weights) if weights else "random (see the warning above)"
    result["total_s"] = round(time.perf_counter() - t0, 1)
    (args.out / "demo_summary.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({"headline": result["headline"], "timings_s": result["timings_s"],
                      "total_s": result["total_s"], "weights": result["weights"],
                      "paths": result["paths"]}, indent=2))
    print(f"\nOpen {result['paths']['report']} to see the replay report.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
