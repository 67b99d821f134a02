"""``build_backbone``: a named, frozen, eval-mode ViT with official or (loudly) random weights."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from uwstego.training.backbones.checkpoint import load_weights
from uwstego.training.backbones.registry import OFFICIAL_WEIGHTS, backbone_config
from uwstego.training.backbones.vit import DinoViT

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "uwstego"


def weights_hint(name: str) -> str:
    url = OFFICIAL_WEIGHTS.get(name)
    if url is None:
        return f"{name} is a test configuration: no official weights exist for it"
    return (f"To train, download {url.rsplit('/', 1)[-1]} from {url} and pass its path with "
            "--weights; for a smoke run whose clusters mean nothing, pass --random-weights")


def download_weights(name: str, cache_dir: str | Path | None = None) -> Path:
    """Fetch the official file for ``name`` into ``cache_dir`` (once) and return its path."""
    backbone_config(name)
    url = OFFICIAL_WEIGHTS.get(name)
    if url is None:
        raise ValueError(weights_hint(name))
    target = Path(cache_dir or DEFAULT_CACHE_DIR) / url.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s to %s", url, target)
        torch.hub.download_url_to_file(url, str(target), progress=True)
    return target


def build_backbone(name: str, weights: str | Path | None = None, *, download: bool = False,
                   cache_dir: str | Path | None = None) -> DinoViT:
    """Backbone ``name`` from :data:`BACKBONES`, frozen (no gradients) and in eval mode.

    Without ``weights`` (and without ``download``) the weights are random: fine for tests and
    speed measurements, useless for training, and logged as a warning saying where to get them.
    """
    model = DinoViT(backbone_config(name), name=name)
    if weights is None and download:
        weights = download_weights(name, cache_dir)
    if weights is not None:
        load_weights(model, weights)
    else:
        logger.warning("backbone %s has RANDOM weights: its features mean nothing. %s.",
                       name, weights_hint(name))
    model.requires_grad_(False)
    return model.eval()
