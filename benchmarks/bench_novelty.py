"""Novelty on a class the model never saw: pixel AUROC, false alarms and per-frame cost, as JSON.

1. ``uwstego synth`` renders a training dive without one actor class (``--hold-out``, default
   diver, drawn in every segment so the test dive surely has one);
2. the real training pipeline trains on it (features, KNN, head, k-means, novelty calibration);
3. the real export writes two bundles of that model: with the novelty output and, for the cost,
   without a calibration;
4. a test dive (another seed) *with* the class is segmented: the pixel AUROC of ``novelty`` for
   the held-out class against every other scored pixel, beside the AUROC of ``1 - confidence``
   (the uncalibrated score the novelty replaces) and the share of the class's pixels marked
   unknown;
5. the same test dive rendered *without* the class gives the false alarm rate: the share of
   pixels beyond their cluster's threshold (the default 1st percentile) on a dive with nothing
   new;
6. cost: median Segmenter time per frame of the two bundles on the same frames.

Without ``--weights`` the backbone has random weights (the only ones available offline): the
figures then measure the plumbing, not the method; real DINO weights are needed for figures
that mean anything. The default is the tiny random ViT (a minute on 2 cores); ``--weights``
switches to DINO ViT-S/8. Usage: ``python benchmarks/bench_novelty.py [--quick] [--weights
dino_deitsmall8_pretrain.pth] [--hold-out diver|debris|cable]``
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uwstego.contract import IGNORE_LABEL
from uwstego.export.pipeline import export_bundle
from uwstego.export.settings import ExportSettings
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import load_trained_model, save_trained_model
from uwstego.training.pipeline import run_training
from uwstego.training.settings import PipelineSettings, TrainSettings
from uwstego.training.synth.classes import CLASS_NAMES
from uwstego.training.synth.sequence import generate_dive
from uwstego.training.synth.settings import HOLD_OUT_CLASSES, DiveSettings
from uwstego.training.synth.writer import write_dive

from timing import emit

# AUROC from at most this many pixels (a uniform sample): exact enough, and fast.
MAX_AUROC_PIXELS = 400_000


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``positive`` (ties count half); None when one
    side is empty."""
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, scores))


def _segment(bundle: Path, frames: list[np.ndarray]) -> tuple[list, list[float]]:
    seg = Segmenter(bundle, backend="onnxruntime")
    try:
        seg.segment(frames[0])  # warm-up
        seg.reset()
        out, times = [], []
        for rgb in frames:
            started = time.perf_counter()
            out.append(seg.segment(rgb))
            times.append((time.perf_counter() - started) * 1e3)
        return out, times
    finally:
        seg.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few frames and steps")
    parser.add_argument("--hold-out", choices=HOLD_OUT_CLASSES, default="diver")
    parser.add_argument("--backbone", help="default: dino_vits8 with --weights, else the tiny "
                        "random ViT tiny_vit8 (fast; ViT-S/8 on random weights takes ~30 "
                        "minutes on 2 cores and means no more)")
    parser.add_argument("--weights", type=Path, help="official DINO weights for the backbone")
    parser.add_argument("--size", default="160x120", help="WxH of the dives and the bundle")
    parser.add_argument("--train-frames", type=int)
    parser.add_argument("--test-frames", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--resolution", type=int, help="training crop size (default 96)")
    parser.add_argument("--train-seed", type=int, default=3)
    parser.add_argument("--test-seed", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", type=Path, help="keep the dives, model and bundles here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning is expected here
    backbone = args.backbone or ("dino_vits8" if args.weights else "tiny_vit8")
    train_frames = args.train_frames or (12 if args.quick else 60)
    test_frames = args.test_frames or (6 if args.quick else 30)
    steps = args.steps or (30 if args.quick else 300)
    resolution = args.resolution or (64 if args.quick else 96)
    width, height = (int(v) for v in args.size.lower().split("x"))
    held = CLASS_NAMES.index(args.hold_out)
    dive = dict(width=width, height=height, segment_frames=10, diver_prob=1.0, cable_prob=1.0)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        train_dir = root / "train_dive"
        write_dive(DiveSettings(seed=args.train_seed, frames=train_frames,
                                hold_out=args.hold_out, **dive),
                   train_dir, save_range=False)
        started = time.perf_counter()
        pipeline = PipelineSettings(backbone=backbone, weights=args.weights,
                                    resolution=resolution, crop_type="full",
                                    feature_batch_size=8, knn_k=8,
                                    allow_random_weights=args.weights is None)
        train = TrainSettings(steps=steps, batch_size=8, clusters=args.clusters,
                              checkpoint_every=max(steps, 1), log_every=max(steps // 5, 1),
                              kmeans_samples=50_000)
        result = run_training([train_dir / "images"], root / "model", pipeline, train,
                              device=args.device, progress=False)
        train_s = time.perf_counter() - started
        model = load_trained_model(result.model_path)
        plain = save_trained_model(root / "plain.pt",
                                   dataclasses.replace(model, calibration=None))
        size = f"{width}x{height}"
        settings = ExportSettings(camera=size, engine="skip")
        novel_bundle = export_bundle(result.model_path, root / "bundle_novelty", settings).path
        plain_bundle = export_bundle(plain, root / "bundle_plain", settings).path

        with_class = list(generate_dive(DiveSettings(seed=args.test_seed, frames=test_frames,
                                                     **dive)))
        without = list(generate_dive(DiveSettings(seed=args.test_seed, frames=test_frames,
                                                  hold_out=args.hold_out, **dive)))
        segs, novel_ms = _segment(novel_bundle, [f.rgb for f in with_class])
        _, plain_ms = _segment(plain_bundle, [f.rgb for f in with_class])
        clean, _ = _segment(novel_bundle, [f.rgb for f in without])

    truth = np.stack([f.labels for f in with_class]).reshape(-1)
    scored = truth != IGNORE_LABEL
    novelty = np.stack([s.novelty for s in segs]).reshape(-1)[scored]
    confidence = np.stack([s.confidence for s in segs]).reshape(-1)[scored]
    unknown = np.stack([s.unknown for s in segs]).reshape(-1)[scored]
    positive = truth[scored] == held
    rng = np.random.default_rng(0)
    take = (rng.choice(positive.size, MAX_AUROC_PIXELS, replace=False)
            if positive.size > MAX_AUROC_PIXELS else slice(None))
    present = sorted({CLASS_NAMES[c] for c in np.unique(truth[scored])})
    emit({
        "benchmark": "novelty",
        "hold_out": args.hold_out,
        "backbone": backbone,
        "weights": str(args.weights) if args.weights else "random (figures meaningless)",
        "quick": args.quick,
        "dive_size": size,
        "train_frames": train_frames,
        "train_steps": steps,
        "clusters": args.clusters,
        "train_s": round(train_s, 1),
        "test_frames": test_frames,
        "test_classes_present": present,
        "held_out_pixels": int(positive.sum()),
        "other_pixels": int((~positive).sum()),
        "auroc_novelty": auroc(novelty[take], positive[take]),
        "auroc_one_minus_confidence": auroc(-confidence[take], positive[take]),
        "held_out_unknown_rate": float(unknown[positive].mean()) if positive.any() else None,
        "other_unknown_rate": float(unknown[~positive].mean()),
        "false_alarm_rate": float(np.mean([s.novel_fraction for s in clean])),
        "calibration_quantile": model.calibration.quantile,
        "frame_ms_with_novelty": round(float(np.median(novel_ms)), 3),
        "frame_ms_without": round(float(np.median(plain_ms)), 3),
        "novelty_cost_ms": round(float(np.median(novel_ms) - np.median(plain_ms)), 3),
        "note": "false_alarm_rate: share of pixels beyond their cluster's threshold on the test "
                "dive rendered without the held-out class; cost: median Segmenter time per "
                "frame (ONNX Runtime CPU) with minus without the novelty output",
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
