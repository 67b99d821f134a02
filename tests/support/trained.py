"""A tiny TrainedModel (random tiny ViT, random head and centroids) for plumbing tests."""

from __future__ import annotations

import numpy as np
import torch

from uwstego.classes import default_classes
from uwstego.enhance import EnhanceSettings
from uwstego.training.artifact import TrainedModel
from uwstego.training.backbones import build_backbone
from uwstego.training.clusters import unit_rows
from uwstego.training.head import HeadConfig, SegmentationHead


def tiny_model(k: int = 4, seed: int = 0, code_dim: int = 6, resolution: int = 64,
               enhancement: EnhanceSettings | None = None) -> TrainedModel:
    torch.manual_seed(seed)
    backbone = build_backbone("tiny_vit8")
    cfg = HeadConfig(in_dim=backbone.embed_dim, code_dim=code_dim)
    head = SegmentationHead(cfg)
    centroids = unit_rows(np.random.default_rng(seed).normal(size=(k, code_dim)))
    return TrainedModel("tiny_vit8", backbone.state_dict(), cfg, head.state_dict(), centroids,
                        default_classes(k), enhancement or EnhanceSettings(), resolution,
                        {"note": "test"})
