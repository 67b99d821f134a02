"""Head-training speed from the feature cache vs recomputing the frozen backbone, as JSON.

Both paths run the same training step (head forward on anchor + KNN-positive batch, STEGO's
loss, cluster probe, one backward, both optimisers) on the same batch size:

- ``from_cache``: the anchor and positive features are read from a real on-disk feature cache
  (float16 shards, memory-mapped), as ``uwstego train`` does;
- ``recompute``: the features are computed by the backbone every step from images already
  decoded, enhanced and normalised in memory (the cheapest the recompute path can be).

The ratio ``speedup`` is measured in the same run. Random backbone weights: speed does not
depend on them. Usage: ``python benchmarks/bench_training.py [--quick] [--device cuda]``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uwstego.training.backbones import build_backbone
from uwstego.training.batches import draw_positives
from uwstego.training.distributed import DistInfo
from uwstego.training.features import build_feature_cache
from uwstego.training.settings import TrainSettings
from uwstego.training.step import build_run, train_step

from timing import emit, time_ms


def _images(folder: Path, n: int, rng: np.random.Generator) -> None:
    folder.mkdir()
    for i in range(n):
        frame = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.GaussianBlur(frame, (0, 0), 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 2 at 112 px, few repeats")
    parser.add_argument("--backbone", default="dino_vits8")
    parser.add_argument("--resolution", type=int, help="default 224 (112 with --quick)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning is expected here
    batch = args.batch_size or (2 if args.quick else 16)
    resolution = args.resolution or (112 if args.quick else 224)
    repeats = 2 if args.quick else 5
    device = torch.device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    backbone = build_backbone(args.backbone).to(device)
    settings = TrainSettings(batch_size=batch)
    n = max(2 * batch, settings.num_neighbors + 1)  # distinct anchors, 7 neighbours each

    with tempfile.TemporaryDirectory() as tmp:
        _images(Path(tmp) / "imgs", n, rng)
        cache = build_feature_cache(Path(tmp) / "imgs", backbone, Path(tmp) / "cache",
                                    resolution=resolution, batch_size=batch,
                                    device=device, crop_type="full")
        # Every item's neighbours are the other items, in a fixed random order.
        knn = np.stack([np.concatenate([[i], rng.permutation(np.delete(np.arange(n), i))])
                        for i in range(n)])
        pixels = torch.randn(n, 3, resolution, resolution, device=device)
        run = build_run(backbone.embed_dim, settings, device, DistInfo())

        def batch_indices() -> tuple[list[int], list[int]]:
            anchors = rng.choice(n, size=batch, replace=False)
            positives = draw_positives(knn, anchors, settings.num_neighbors, run.generator)
            return anchors.tolist(), positives.tolist()

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def step_from_cache() -> None:
            anchors, positives = batch_indices()
            train_step(run, cache.feats(anchors).to(device), cache.feats(positives).to(device))
            sync()

        def step_recompute() -> None:
            anchors, positives = batch_indices()
            with torch.no_grad():
                feats = backbone(pixels[anchors])
                feats_pos = backbone(pixels[positives])
            train_step(run, feats, feats_pos)
            sync()

        cached = time_ms(step_from_cache, repeats=repeats * 4, warmup=2)
        recomputed = time_ms(step_recompute, repeats=repeats, warmup=1)

    emit({
        "benchmark": "training",
        "backbone": args.backbone,
        "resolution": resolution,
        "batch_size": batch,
        "device": str(device),
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "from_cache_steps_per_s": round(1e3 / cached["median_ms"], 3),
        "recompute_steps_per_s": round(1e3 / recomputed["median_ms"], 3),
        "speedup": round(recomputed["median_ms"] / cached["median_ms"], 1),
        "from_cache_step_ms": cached,
        "recompute_step_ms": recomputed,
        "note": "same step and batch; the recompute path gets pre-decoded images for free",
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
