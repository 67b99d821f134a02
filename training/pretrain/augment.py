"""DINO's multi-crop augmentation on enhanced frames (docs/pretrain.md §2), in numpy/OpenCV.

Two global crops and N local crops per frame; each: random resized crop, horizontal flip, colour
jitter (p 0.8, the four operations in random order as torchvision applies them), grayscale
(p 0.2), Gaussian blur (global 1 always, global 2 p 0.1, locals p 0.5), solarisation (global 2,
p 0.2), ImageNet normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from uwstego.training.data.crops import normalise

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class CropPolicy:
    size: int
    scale: tuple[float, float]
    blur_p: float
    solarize_p: float = 0.0


def policies(global_size: int, local_size: int, local_crops: int,
             global_scale: tuple[float, float], local_scale: tuple[float, float]
             ) -> list[CropPolicy]:
    return ([CropPolicy(global_size, global_scale, 1.0),
             CropPolicy(global_size, global_scale, 0.1, 0.2)]
            + [CropPolicy(local_size, local_scale, 0.5)] * local_crops)


def resized_crop_box(height: int, width: int, scale: tuple[float, float],
                     rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` as torchvision's RandomResizedCrop draws it (10 tries, then the
    centre crop at the nearest allowed aspect ratio)."""
    area = height * width
    log_ratio = (math.log(_RATIO[0]), math.log(_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    ratio = width / height
    if ratio < _RATIO[0]:
        w, h = width, round(width / _RATIO[0])
    elif ratio > _RATIO[1]:
        h, w = height, round(height * _RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def gray(img: np.ndarray) -> np.ndarray:
    return img @ _GRAY


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1
                 ) -> np.ndarray:
    """torchvision's ColorJitter on float RGB in [0, 1]."""
    for op in rng.permutation(4):
        if op == 0:
            img = np.clip(img * rng.uniform(1 - brightness, 1 + brightness), 0, 1)
        elif op == 1:
            f = rng.uniform(1 - contrast, 1 + contrast)
            img = np.clip(img * f + gray(img).mean() * (1 - f), 0, 1)
        elif op == 2:
            f = rng.uniform(1 - saturation, 1 + saturation)
            img = np.clip(img * f + gray(img)[..., None] * (1 - f), 0, 1)
        else:
            hsv = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * rng.uniform(-hue, hue), 360.0)
            img = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)
    return img.astype(np.float32)


def augment(frame: np.ndarray, policy: CropPolicy, rng: np.random.Generator) -> np.ndarray:
    """One crop of an HxWx3 uint8 frame, float32 HxWx3 in [0, 1] before normalisation."""
    top, left, h, w = resized_crop_box(frame.shape[0], frame.shape[1], policy.scale, rng)
    patch = frame[top:top + h, left:left + w]
    interp = cv2.INTER_AREA if h > policy.size else cv2.INTER_CUBIC
    img = cv2.resize(patch, (policy.size, policy.size), interpolation=interp)
    img = img.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.8:
        img = color_jitter(img, rng)
    if rng.random() < 0.2:
        img = np.repeat(gray(img)[..., None], 3, axis=2)
    if rng.random() < policy.blur_p:
        img = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), rng.uniform(0.1, 2.0))
    if rng.random() < policy.solarize_p:
        img = np.where(img >= 0.5, 1.0 - img, img)  # PIL's solarize at threshold 128
    return np.ascontiguousarray(img, dtype=np.float32)


def multi_crop_batch(frames: list[np.ndarray], crop_policies: list[CropPolicy],
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Per crop policy, the normalised ``[B, 3, S, S]`` batch of that crop of every frame."""
    crops: list[list[np.ndarray]] = [[] for _ in crop_policies]
    for frame in frames:
        for c, policy in enumerate(crop_policies):
            crops[c].append(augment(frame, policy, rng))
    return [normalise(batch) for batch in crops]
