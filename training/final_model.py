"""The end of a training run (docs/stego.md §7): spherical k-means on the trained code of the
whole cache, the novelty calibration, and the model file with its provenance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uwstego import __version__
from uwstego.classes import ClassInfo, default_classes
from uwstego.training.artifact import TrainedModel, save_trained_model
from uwstego.training.backbones import DinoViT
from uwstego.training.calibration import calibrate_cosines, graph_confidences
from uwstego.training.clusters import spherical_kmeans
from uwstego.training.features import FeatureCache, weights_fingerprint
from uwstego.training.head import SegmentationHead
from uwstego.training.settings import TrainSettings
from uwstego.training.stego import get_preset


def cache_facts(cache: FeatureCache) -> dict[str, Any]:
    """Backbone id, weights fingerprint, enhancement and resolution of a feature cache."""
    return {"backbone": str(cache.meta["backbone"]), "weights": str(cache.meta["weights"]),
            "resolution": cache.resolution, "enhancement": cache.enhancement}


def check_backbone(backbone: DinoViT | None, cache: FeatureCache) -> None:
    """The model file embeds the backbone's weights: they must be the ones of the cache."""
    facts = cache_facts(cache)
    if backbone is None:
        raise ValueError("train_head needs the backbone the cache was built with, to embed "
                         "its weights in the model file")
    if backbone.name != facts["backbone"] or weights_fingerprint(backbone) != facts["weights"]:
        raise ValueError(f"backbone {backbone.name!r} (weights "
                         f"{weights_fingerprint(backbone)}) is not the one the feature cache "
                         f"was built with ({facts['backbone']!r}, weights {facts['weights']})")


def cache_codes(head: SegmentationHead, cache: FeatureCache, device: torch.device,
                samples: int, seed: int, batch_size: int = 32) -> np.ndarray:
    """Eval-mode code vectors ``[M, D]`` from every cached image, ``samples // N`` pixels each."""
    rng = np.random.default_rng(seed)
    n = len(cache)
    per_image = max(1, samples // n)
    out = []
    head.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            idx = list(range(start, min(start + batch_size, n)))
            code = head(cache.feats(idx).to(device))
            vecs = code.permute(0, 2, 3, 1).reshape(len(idx), -1, code.shape[1]).cpu().numpy()
            for v in vecs:
                take = rng.choice(len(v), size=min(per_image, len(v)), replace=False)
                out.append(v[take])
    return np.concatenate(out).astype(np.float32)


def write_model(path: Path, head: SegmentationHead, cache: FeatureCache, backbone: DinoViT,
                settings: TrainSettings, device: torch.device,
                classes: Sequence[ClassInfo] | None, provenance: dict[str, Any]
                ) -> TrainedModel:
    """k-means on the trained code of the whole cache, the calibration, then ``path``."""
    codes = cache_codes(head, cache, device, settings.kmeans_samples, settings.seed)
    centroids = spherical_kmeans(codes, settings.clusters, seed=settings.seed)
    cosines, clusters = graph_confidences(head, cache, centroids, device,
                                          settings.kmeans_samples, settings.seed,
                                          upsample=backbone.patch_size)
    calibration = calibrate_cosines(cosines, clusters, settings.clusters,
                                    settings.novelty_quantile)
    facts = cache_facts(cache)
    model = TrainedModel(
        backbone=facts["backbone"],
        backbone_state={k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        head_config=head.config,
        head_state={k: v.detach().cpu() for k, v in head.state_dict().items()},
        centroids=centroids,
        classes=tuple(classes) if classes is not None else default_classes(settings.clusters),
        enhancement=facts["enhancement"],
        resolution=facts["resolution"],
        provenance={
            "uwstego_version": __version__,
            "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "train_settings": settings.to_dict(),
            "loss_preset": get_preset(settings.preset).to_dict(),
            "images": len(cache),
            "centroids": "spherical MiniBatchKMeans on L2-normalised eval-mode codes",
            "checkpoint_selection": "fixed step count (no labels used)",
            "novelty_calibration": "per-cluster quantiles of the graph's cosine (scores and "
                                   "norm upsampled bilinearly by the patch size) of training "
                                   "pixels",
            **provenance,
        },
        calibration=calibration,
    )
    save_trained_model(path, model)
    return model
