"""Which frames the export validates on: the model's own training frames by default.

A parity or precision check only means something on frames where the model's classes split
(:mod:`uwstego.agreement`); the frames a model was trained on are where it does, by construction of
its k-means centroids. The trained model records its feature cache (``uwstego.training.pipeline``),
and
the cache records every frame's source reference, so the export reads ``count`` frames spread
evenly over the training set again. ``--samples`` (a folder of images) overrides; a model without
a readable training record falls back to a seeded synthetic dive, and the log says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from uwstego.export.validate import sample_frames
from uwstego.image_size import Size
from uwstego.sample_frames import folder_frames
from uwstego.training.artifact import TrainedModel

log = logging.getLogger(__name__)


def _fit(rgb: np.ndarray, camera: Size) -> np.ndarray:
    if rgb.shape[:2] == (camera.height, camera.width):
        return rgb
    shrink = rgb.shape[0] * rgb.shape[1] > camera.width * camera.height
    return cv2.resize(rgb, (camera.width, camera.height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def training_frames(model: TrainedModel, camera: Size, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over the model's training frames, at the camera size.

    Raises ``ValueError``/``OSError`` when the model has no training record or its frames can
    no longer be read (moved cache or source).
    """
    from uwstego.training.data.sources import FrameRef, read_frame
    from uwstego.training.features import FeatureCache

    cache_dir = model.provenance.get("feature_cache")
    if not cache_dir:
        raise ValueError("the model records no feature cache (not trained by uwstego train)")
    cache = FeatureCache.open(Path(cache_dir))
    crops = len(cache.crops)
    total = len(cache) // crops
    picks = np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(int))
    frames = []
    for frame in picks:
        item = cache.item(int(frame) * crops)
        ref = FrameRef.from_dict({k: item[k] for k in ("kind", "path", "index", "topic", "t_ns")
                                  if k in item})
        frames.append(_fit(read_frame(ref), camera))
    return frames


def validation_frames(model: TrainedModel, camera: Size, count: int,
                      samples: str | Path | None = None, seed: int = 0
                      ) -> tuple[list[np.ndarray], str]:
    """``(frames, description)``: ``samples`` if given, else training frames, else synthetic."""
    if samples is not None:
        return folder_frames(Path(samples), camera, count), str(samples)
    try:
        frames = training_frames(model, camera, count)
    except (ValueError, OSError, KeyError) as exc:
        frames, source = sample_frames(camera, count, seed)
        log.warning("validating on %s: the model's training frames are unavailable (%s); pass "
                    "--samples with frames where its classes split", source, exc)
        return frames, source
    return frames, f"{len(frames)} of the model's training frames " \
                   f"({model.provenance['feature_cache']})"
