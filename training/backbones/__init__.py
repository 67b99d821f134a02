"""Frozen DINO / DINOv2 ViT backbones, one module per building block as in DINOv2's layers."""

from __future__ import annotations

from uwstego.training.backbones.build import build_backbone, download_weights, weights_hint
from uwstego.training.backbones.checkpoint import (
    LAYOUTS,
    CheckpointError,
    load_weights,
    normalise_state_dict,
    read_checkpoint,
    save_random_checkpoint,
)
from uwstego.training.backbones.registry import (
    BACKBONES,
    OFFICIAL_WEIGHTS,
    backbone_config,
    matching_backbones,
)
from uwstego.training.backbones.vit import IMAGENET_MEAN, IMAGENET_STD, DinoViT, ViTConfig

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "OFFICIAL_WEIGHTS",
    "CheckpointError",
    "DinoViT",
    "ViTConfig",
    "backbone_config",
    "build_backbone",
    "download_weights",
    "load_weights",
    "matching_backbones",
    "normalise_state_dict",
    "read_checkpoint",
    "save_random_checkpoint",
    "weights_hint",
]
