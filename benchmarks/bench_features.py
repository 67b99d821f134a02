"""Feature-extraction throughput of the frozen backbone on this machine, as JSON on stdout.

- ``forward``: ViT forward passes (random weights; speed does not depend on them) on
  ImageNet-normalised batches, median over repeats;
- ``cache_build``: the whole ``build_feature_cache`` path over image files (decode, enhancement,
  crop/resize, backbone, float16 shards, descriptors), one crop per frame;
- ``cache_read``: random-batch reads from the finished cache, what each head-training step pays;
- ``ranks``: the same build with 1 and with 2 torch.distributed ranks (gloo, one thread each,
  each rank a spawned process) on the same items: wall time, items/s per rank, the ratio, and
  whether both caches are identical. Shards are made small (an eighth of the items) so that
  both ranks get work; on a machine with fewer free cores than ranks the ratio shows the
  contention, not the code (``load_avg`` is recorded alongside).

Usage: ``python benchmarks/bench_features.py [--quick] [--backbone dino_vits8] [--resolution 224]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uwstego.training.backbones import build_backbone
from uwstego.training.features import FeatureCache, build_feature_cache

from timing import emit, time_ms


def _write_images(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(count):
        frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), cv2.GaussianBlur(frame, (0, 0), 3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_build(rank: int, world: int, port: int, job: dict) -> None:
    """One rank of the scaling run: a timed ``build_feature_cache`` between two barriers."""
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                          GLOO_SOCKET_IFNAME="lo")
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # every rank the same (random) weights
    model = build_backbone(job["backbone"])
    if world > 1:
        torch.distributed.barrier()
    start, cpu = time.perf_counter(), time.process_time()
    build_feature_cache(job["folder"], model, job["out"], resolution=job["resolution"],
                        batch_size=job["batch"], crop_type="full",
                        shard_items=job["shard_items"], progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if world > 1:
        torch.distributed.destroy_process_group()
    shards = len(FeatureCache.open(job["out"]).meta["shards"])
    items = sum(min(job["shard_items"], job["images"] - s * job["shard_items"])
                for s in range(rank, shards, world))
    Path(job["out"], f"rank{rank}.time.json").write_text(json.dumps(
        {"wall_s": wall, "cpu_s": cpu, "items": items}))


def _scaling(backbone: str, res: int, batch: int, images: int, tmp: Path) -> dict:
    folder = tmp / "scaling_imgs"
    _write_images(folder, images, seed=1)
    shard_items = max(1, images // 8)
    runs = {}
    for world in (1, 2):
        out = tmp / f"scaling_{world}"
        job = {"backbone": backbone, "folder": str(folder), "out": str(out), "resolution": res,
               "batch": batch, "shard_items": shard_items, "images": images}
        torch.multiprocessing.spawn(_rank_build, args=(world, _free_port(), job), nprocs=world,
                                    join=True)
        ranks = [json.loads((out / f"rank{r}.time.json").read_text()) for r in range(world)]
        wall = max(r["wall_s"] for r in ranks)
        runs[world] = {"wall_s": round(wall, 3),
                       "items_per_rank": [r["items"] for r in ranks],
                       "items_per_s_per_rank": [round(r["items"] / wall, 3) for r in ranks],
                       "items_per_s": round(images / wall, 3),
                       # CPU seconds each rank spent: shows the work split whatever the load.
                       "cpu_s_per_rank": [round(r["cpu_s"], 3) for r in ranks]}
    same = all(np.array_equal(np.load(tmp / "scaling_1" / name), np.load(tmp / "scaling_2" /
                                                                         name))
               for name in ["descriptors.npy"] + [f"shard_{i:05d}.npy" for i in
                                                   range(-(-images // shard_items))])
    return {"items": images, "shard_items": shard_items, "threads_per_rank": 1,
            "ranks_1": runs[1], "ranks_2": runs[2],
            "speedup_2_vs_1": round(runs[1]["wall_s"] / runs[2]["wall_s"], 3),
            "cpu_share_of_busiest_rank": round(max(runs[2]["cpu_s_per_rank"])
                                               / runs[1]["cpu_s_per_rank"][0], 3),
            "caches_identical": bool(same), "load_avg_1min": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few images, for a smoke run")
    parser.add_argument("--backbone", default="dino_vits8")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--ranks-only", action="store_true",
                        help="only the 1 vs 2 ranks comparison")
    parser.add_argument("--ranks-images", type=int, help="images for the ranks comparison "
                        "(default 8 with --quick, else 24)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning is expected here
    batch, repeats, images = (4, 3, 4) if args.quick else (16, 5, 32)
    rank_images = args.ranks_images or (8 if args.quick else 24)
    if args.ranks_only:
        with tempfile.TemporaryDirectory() as tmp:
            emit({"benchmark": "features_ranks", "backbone": args.backbone,
                  "resolution": args.resolution, "cpu_count": os.cpu_count(),
                  "batch_size": batch, **_scaling(args.backbone, args.resolution, batch,
                                                  rank_images, Path(tmp))})
        return 0
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
        _write_images(folder, images)
        start = time.perf_counter()
        cache = build_feature_cache(folder, model, Path(tmp) / "cache", resolution=res,
                                    batch_size=batch, crop_type="full")
        build = images / (time.perf_counter() - start)
        read_batch = min(16, len(cache))
        read_ms = time_ms(lambda: cache.feats(rng.integers(0, len(cache), read_batch)),
                          repeats=max(repeats, 5), warmup=1)
        read = read_batch / read_ms["median_ms"] * 1e3
        item_mb = np.prod(cache.feature_shape) * 2 / 1e6
        ranks = _scaling(args.backbone, res, batch, rank_images, Path(tmp))

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
        "ranks": ranks,
    }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
