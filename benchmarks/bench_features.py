"""Feature-extraction throughput of the frozen backbone on this machine, as JSON on stdout.

- ``forward``: ViT forward passes (random weights; speed does not depend on them) on
  ImageNet-normalised batches, median over repeats;
- ``cache_build``: the whole ``build_feature_cache`` path over image files (decode, enhancement,
  crop/resize, backbone, float16 shards, descriptors), one crop per frame;
- ``cache_read``: random-batch reads from the finished cache, what each head-training step pays.

Usage: ``python benchmarks/bench_features.py [--quick] [--backbone dino_vits8] [--resolution 224]``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training.backbones import build_backbone
from training.features import build_feature_cache

from timing import emit, time_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few images, for a smoke run")
    parser.add_argument("--backbone", default="dino_vits8")
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning is expected here
    batch, repeats, images = (4, 3, 4) if args.quick else (16, 5, 32)
    torch.manual_seed(0)
    model = build_backbone(args.backbone)
    res = args.resolution
    x = torch.randn(batch, 3, res, res)
    with torch.inference_mode():
        forward_ms = time_ms(lambda: model(x), repeats=repeats, warmup=1)
    forward = batch / forward_ms["median_ms"] * 1e3

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        for i in range(images):
            frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
            cv2.imwrite(str(folder / f"{i:04d}.jpg"), cv2.GaussianBlur(frame, (0, 0), 3))
        start = time.perf_counter()
        cache = build_feature_cache(folder, model, Path(tmp) / "cache", resolution=res,
                                    batch_size=batch, crop_type="full")
        build = images / (time.perf_counter() - start)
        read_batch = min(16, len(cache))
        read_ms = time_ms(lambda: cache.feats(rng.integers(0, len(cache), read_batch)),
                          repeats=max(repeats, 5), warmup=1)
        read = read_batch / read_ms["median_ms"] * 1e3
        item_mb = np.prod(cache.feature_shape) * 2 / 1e6

    result = {
        "benchmark": "features",
        "backbone": args.backbone,
        "resolution": res,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "batch_size": batch,
        "forward_images_per_s": round(forward, 3),
        "cache_build_images_per_s": round(build, 3),
        "cache_read_items_per_s": round(read, 1),
        "cache_read_vs_forward": round(read / forward, 1),
        "cache_mb_per_item": round(float(item_mb), 3),
        "forward_batch_ms": forward_ms,
    }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
