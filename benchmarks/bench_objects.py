"""Objects: cost per frame and how many true objects a model finds, as JSON.

1. Cost (torch-free): regions and tracks of four object classes (fish, debris, diver, cable) on
   the exact label images of synthetic dives at 640x480 and 1920x1080, with confidence and
   novelty means per region, as the node runs them after every frame (target below 2 ms at
   640x480). The label images stand in for a model's: their objects are the dives' own.
2. Found (needs torch, skipped with ``--cost-only``): a model is trained on one synthetic dive
   (the real pipeline), exported, and ``uwstego replay``'s own code replays another dive with
   its ground truth and ``--gt-objects``; per true object class (regions of at least
   ``--min-area`` pixels), the share found by the matched cluster at a box IoU of
   ``--iou`` (recall) and the share of that cluster's regions that are true objects
   (precision). Without ``--weights`` the backbone has random weights (no DINO weights are
   available offline, and the demo has no trained backbone yet): the recall and precision then
   measure the plumbing, not the method.

Usage: ``python benchmarks/bench_objects.py [--quick] [--cost-only] [--weights FILE]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uwstego.objects import ObjectSettings, Tracker, find_regions
from uwstego.training.synth.classes import CLASS_NAMES
from uwstego.training.synth.sequence import generate_dive
from uwstego.training.synth.settings import DiveSettings

from timing import emit

OBJECTS = ("fish", "debris", "diver", "cable")
DIVE = dict(diver_prob=1.0, cable_prob=1.0, fish_density=30.0)


def frame_cost(size: tuple[int, int], frames: int, repeats: int, min_area: int) -> dict:
    """Median ms per frame of regions + tracks over ``frames`` dive frames at ``size``."""
    dive = list(generate_dive(DiveSettings(seed=4, frames=frames, width=size[0],
                                           height=size[1], degrade=False, **DIVE)))
    ids = [CLASS_NAMES.index(c) for c in OBJECTS]
    rng = np.random.default_rng(0)
    conf = rng.random((size[1], size[0]), dtype=np.float32)
    novelty = rng.random((size[1], size[0]), dtype=np.float32)
    samples, regions = [], []
    for _ in range(repeats):
        tracker = Tracker(ObjectSettings(classes=OBJECTS, min_area=min_area))
        for i, f in enumerate(dive):
            started = time.perf_counter()
            found = find_regions(f.labels, ids, min_area, conf, novelty)
            tracker.update(found, f.labels.shape, i, i)
            samples.append((time.perf_counter() - started) * 1e3)
            regions.append(len(found))
    return {"median_ms": round(float(np.median(samples)), 3),
            "p95_ms": round(float(np.percentile(samples, 95)), 3),
            "min_ms": round(float(np.min(samples)), 3),
            "regions_per_frame": round(float(np.mean(regions)), 1),
            "object_pixel_share": round(float(np.mean([np.isin(f.labels, ids).mean()
                                                       for f in dive])), 4),
            "frames": frames, "repeats": repeats}


def found_fraction(args: argparse.Namespace, root: Path) -> dict:
    """Train, export and replay with ground truth; the objects scores of the replay."""
    from uwstego.export.pipeline import export_bundle
    from uwstego.replay.loop import ReplaySettings, replay
    from uwstego.replay.objects_run import OBJECTS_DIR, TRUTH_ROLE
    from uwstego.training.pipeline import PipelineSettings, run_training
    from uwstego.training.settings import TrainSettings
    from uwstego.training.synth.writer import write_dive

    width, height = (int(v) for v in args.size.lower().split("x"))
    dive = dict(width=width, height=height, segment_frames=10, **DIVE)
    write_dive(DiveSettings(seed=3, frames=args.train_frames, **dive), root / "train",
               save_range=False)
    write_dive(DiveSettings(seed=5, frames=args.test_frames, **dive), root / "test",
               folders=False, bag=True)
    started = time.perf_counter()
    backbone = "dino_vits8" if args.weights else "tiny_vit8"
    trained = run_training(
        [root / "train" / "images"], root / "model",
        PipelineSettings(backbone=backbone, weights=args.weights, resolution=96,
                         crop_type="full", feature_batch_size=8, knn_k=8,
                         allow_random_weights=args.weights is None),
        TrainSettings(steps=args.steps, batch_size=8, clusters=args.clusters,
                      checkpoint_every=args.steps, log_every=args.steps,
                      kmeans_samples=50_000), device="cpu", progress=False)
    bundle = export_bundle(trained.model_path, args.size, None, root / "bundle",
                           engine="skip").path
    train_s = time.perf_counter() - started
    settings = ReplaySettings(backend="onnxruntime", progress=False,
                              gt_topic="/camera/labels_gt", gt_names=CLASS_NAMES,
                              objects=ObjectSettings(min_area=args.min_area),
                              gt_objects=OBJECTS, object_iou=args.iou)
    result = replay(root / "test" / "bag", bundle, settings, report_dir=root / "report")
    truth = json.loads((root / "report" / OBJECTS_DIR / f"{TRUTH_ROLE}.json").read_text())
    scores = truth["detection_scores"][0]["scores"]
    return {"backbone": backbone,
            "weights": str(args.weights) if args.weights else
            "random (recall and precision measure the plumbing, not the method)",
            "dive_size": args.size, "train_frames": args.train_frames, "steps": args.steps,
            "clusters": args.clusters, "train_and_export_s": round(train_s, 1),
            "test_frames": result.summary.frames.processed, "min_area_px": args.min_area,
            "iou": args.iou, "mIoU": result.summary.primary.ground_truth.scores.mIoU,
            "per_class": {s["class"]: {k: s[k] for k in ("matched_cluster", "true_objects",
                                                          "detections", "matched", "recall",
                                                          "precision")} for s in scores}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few frames and steps")
    parser.add_argument("--cost-only", action="store_true", help="only the torch-free cost")
    parser.add_argument("--weights", type=Path, help="official DINO ViT-S/8 weights")
    parser.add_argument("--size", default="160x120", help="WxH of the dives for 'found'")
    parser.add_argument("--min-area", type=int, default=16,
                        help="true objects and detections of at least this many pixels")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--clusters", type=int, default=9)
    parser.add_argument("--keep", type=Path, help="keep the dives, model, bundle and report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning is expected here
    args.train_frames = 12 if args.quick else 60
    args.test_frames = 6 if args.quick else 30
    args.steps = 30 if args.quick else 300
    frames, repeats = (3, 2) if args.quick else (8, 5)
    result = {"benchmark": "objects", "quick": args.quick,
              "cost_640x480": frame_cost((640, 480), frames, repeats, 64),
              "cost_1920x1080": frame_cost((1920, 1080), frames, repeats, 64),
              "cost_target_ms_640x480": 2.0,
              "note": "cost: find_regions + Tracker.update per frame (OpenCV's default "
                      "threads) on the dives' label images (4 object classes, min area 64 px)"}
    if not args.cost_only:
        with tempfile.TemporaryDirectory() as tmp:
            result["found"] = found_fraction(args, args.keep or Path(tmp))
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
