"""``uwstego train`` end to end: sources -> feature cache -> KNN table -> head -> ``model.pt``.

Layout of an output folder::

    OUT/
      features/<key>/   the feature cache (reused when present; see uwstego.training.features)
      knn.npz           KNN table of that cache (reused when the cache and k match)
      state.pt          resumable training state
      train_log.csv     every loss term, tensorboard/ the same plus cd histograms
      model.pt          the trained model (uwstego.training.artifact)

Under torchrun every rank extracts its share of the cache's shards and computes its share of
the KNN table's rows (see uwstego.training.features and uwstego.training.knn), then trains on its
slice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from uwstego.atomic import atomic_path
from uwstego.training import distributed as ddp
from uwstego.training.backbones import OFFICIAL_WEIGHTS, build_backbone, weights_hint
from uwstego.training.data.sources import Source, source_from_path
from uwstego.training.features import FeatureCache, build_feature_cache, cache_key
from uwstego.training.knn import compute_knn_ranks
from uwstego.training.settings import PipelineSettings, TrainSettings
from uwstego.training.train import TrainResult, check_new_run, train_head
from uwstego.training.train_state import STATE_FILE
from uwstego.training.trust import describe_data, weights_origin
from uwstego.trust import TRUST_KEY, ModelTrust

log = logging.getLogger(__name__)

KNN_FILE = "knn.npz"


def open_sources(paths: Sequence[str | Path], settings: PipelineSettings) -> list[Source]:
    if not paths:
        raise ValueError("no data sources given: pass image folders, videos or rosbag2 folders")
    return [source_from_path(p, stride=settings.video_stride, rate_hz=settings.video_rate_hz,
                             topic=settings.topic) for p in paths]


def load_or_compute_knn(cache: FeatureCache, path: Path, k: int, exclude_window: int | None,
                        device: str | torch.device = "cpu") -> np.ndarray:
    """The cache's KNN table, recomputed unless ``path`` holds one for the same cache and k.

    Every DDP rank calls this alike: the ranks share the computation, rank 0 writes the file.
    """
    tag = f"{cache.key}|k={k}|exclude={exclude_window}"
    info = ddp.dist_info()
    if path.is_file():
        with np.load(path) as saved:
            if str(saved["tag"]) == tag:
                if info.is_main:
                    log.info("reusing KNN table %s", path)
                return saved["indices"]
    groups, positions = cache.sequences() if exclude_window is not None else (None, None)
    knn = compute_knn_ranks(np.array(cache.descriptors), k=k, exclude_same_sequence=exclude_window,
                            groups=groups, positions=positions, device=device)
    if info.is_main:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, indices=knn, tag=np.array(tag))
        log.info("KNN table of %d items written to %s", len(knn), path)
    ddp.barrier()  # no rank may look for the file before it is complete
    return knn


def _build_backbone(pipeline: PipelineSettings):
    if pipeline.weights is not None:
        return build_backbone(pipeline.backbone, pipeline.weights)
    # Random weights (smoke runs) from a fixed seed: every rank and every resumed run must get
    # the same network, or the cache key changes and the features are computed again.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_backbone(pipeline.backbone)


def run_training(sources: Sequence[str | Path], out_dir: str | Path,
                 pipeline: PipelineSettings | None = None, train: TrainSettings | None = None,
                 resume: bool = False, device: str = "cpu", progress: bool = True
                 ) -> TrainResult:
    """Train a model on ``sources`` into ``out_dir``; every DDP rank calls this alike."""
    pipeline = pipeline or PipelineSettings()
    train = train or TrainSettings()
    out_dir = Path(out_dir)
    info = ddp.dist_info()
    check_new_run(out_dir, resume)
    source_list = open_sources(sources, pipeline)
    if pipeline.weights is None and pipeline.backbone in OFFICIAL_WEIGHTS \
            and not pipeline.allow_random_weights:
        # Random features train nothing; only the test configurations may run without weights.
        raise ValueError(f"--weights is required for {pipeline.backbone}. "
                         f"{weights_hint(pipeline.backbone)}")
    backbone = _build_backbone(pipeline)
    key = cache_key(backbone, pipeline.resolution, pipeline.crop_type, pipeline.enhancement)
    cache_dir = out_dir / "features" / key
    cache = build_feature_cache(source_list, backbone, cache_dir, resolution=pipeline.resolution,
                                batch_size=pipeline.feature_batch_size, device=device,
                                enhancement=pipeline.enhancement, crop_type=pipeline.crop_type,
                                shard_items=pipeline.feature_shard_items, progress=progress)
    knn = load_or_compute_knn(cache, out_dir / KNN_FILE, pipeline.knn_k,
                              pipeline.knn_exclude_window, device)
    if resume and not (out_dir / STATE_FILE).is_file():
        if info.is_main:
            log.info("--resume: %s holds no training state yet; training starts at step 0",
                     out_dir)
        resume = False
    sources_described = [s.describe() for s in source_list]
    trust = ModelTrust(weights_origin(pipeline.backbone, pipeline.weights), pipeline.backbone,
                       describe_data(sources_described, len(cache)), train.steps, train.clusters)
    provenance = {
        TRUST_KEY: trust.to_dict(),
        "sources": sources_described,
        "feature_cache": str(cache_dir.resolve()),
        "crop_type": pipeline.crop_type,
        "knn": {"k": pipeline.knn_k, "exclude_window": pipeline.knn_exclude_window},
        "weights_file": str(pipeline.weights) if pipeline.weights else None,
        "random_weights": pipeline.weights is None,
    }
    return train_head(cache, knn, train, out_dir, resume, backbone=backbone, device=device,
                      provenance=provenance, progress=progress)
