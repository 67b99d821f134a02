"""From a decoded frame to the backbone's input: enhancement, STEGO's crops, normalisation.

Order, as on the vehicle: the enhancement chain runs on the whole frame (its statistics describe
the camera image, not a crop), then each crop is cut, its short side resized to the training
resolution (INTER_AREA when shrinking, bicubic when enlarging; STEGO's nearest neighbour is not
copied) and centre-cropped square.

Crops (STEGO's five-crop precompute plus its per-sample centre crop): the four corners and the
centre, each half the frame's height and width, and ``full``, the whole frame.

Enhancement state: each still image starts from a reset :class:`uwstego.enhance.Enhancer`; within
a video or bag topic the EMA runs over *every* decoded frame in recording order, sampled or not,
so the statistics are the ones the vehicle would compute on that footage. The five numbers the
host stage derives for a frame are kept with it, so :func:`render` can rebuild any cached crop
later without replaying the sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from uwstego.enhance import Enhancer, EnhanceSettings, apply_params, clahe_lightness
from uwstego.training.backbones.vit import IMAGENET_MEAN, IMAGENET_STD
from uwstego.training.data.sources import Frame

FIVE_CROP = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
CROP_TYPES: dict[str, tuple[str, ...]] = {
    "five+full": (*FIVE_CROP, "full"),
    "five": FIVE_CROP,
    "full": ("full",),
}
_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)


def crop_names(crop_type: str) -> tuple[str, ...]:
    try:
        return CROP_TYPES[crop_type]
    except KeyError:
        raise ValueError(f"unknown crop type {crop_type!r}; choose from {sorted(CROP_TYPES)}") \
            from None


def crop_box(height: int, width: int, name: str) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of crop ``name``, torchvision ``five_crop`` geometry."""
    if name == "full":
        return 0, height, 0, width
    ch, cw = height // 2, width // 2
    if ch < 1 or cw < 1:
        raise ValueError(f"a {height}x{width} frame is too small to five-crop")
    top = {"top_left": 0, "top_right": 0, "bottom_left": height - ch, "bottom_right": height - ch,
           "center": round((height - ch) / 2)}
    left = {"top_left": 0, "top_right": width - cw, "bottom_left": 0, "bottom_right": width - cw,
            "center": round((width - cw) / 2)}
    if name not in top:
        raise ValueError(f"unknown crop {name!r}; known: {[*FIVE_CROP, 'full']}")
    return top[name], top[name] + ch, left[name], left[name] + cw


def resize_center_crop(img: np.ndarray, resolution: int) -> np.ndarray:
    """Short side to ``resolution``, then the central ``resolution`` square."""
    h, w = img.shape[:2]
    scale = resolution / min(h, w)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    img = cv2.resize(img, size, interpolation=interp) if (size[1], size[0]) != (h, w) else img
    top = round((img.shape[0] - resolution) / 2)
    left = round((img.shape[1] - resolution) / 2)
    return img[top:top + resolution, left:left + resolution]


def make_crops(img: np.ndarray, crop_type: str, resolution: int) -> list[np.ndarray]:
    """The crops of one (enhanced) frame, each ``resolution x resolution``, in type order."""
    h, w = img.shape[:2]
    crops = []
    for name in crop_names(crop_type):
        top, bottom, left, right = crop_box(h, w, name)
        crops.append(resize_center_crop(img[top:bottom, left:right], resolution))
    return crops


def render(rgb: np.ndarray, params: np.ndarray, settings: EnhanceSettings) -> np.ndarray:
    """The enhanced frame, float32 HxWx3 in [0, 1], from the host-stage ``params`` of that frame.

    Equal to :meth:`uwstego.enhance.Enhancer.apply` for the frame those params were measured on
    (tested): with CLAHE the host stage bakes the gains in and hands the graph the identity.
    """
    img = apply_params(rgb.astype(np.float32) / 255.0, params)
    if settings.clahe:
        img = clahe_lightness(img, settings.clahe_clip, settings.clahe_tiles)
        img = img.astype(np.float32) / 255.0
    return img


def enhance_params(frames: Iterable[Frame], settings: EnhanceSettings
                   ) -> Iterator[tuple[Frame, np.ndarray]]:
    """``(frame, params)`` for the kept frames; the EMA resets between sequences only."""
    enhancer = Enhancer(settings)
    sequence = None
    for frame in frames:
        if frame.ref.sequence != sequence:
            enhancer.reset()
            sequence = frame.ref.sequence
        params = enhancer.frame_params(frame.rgb)
        if frame.keep:
            yield frame, params


def to_uint8(img01: np.ndarray) -> np.ndarray:
    return (np.clip(img01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def normalise(crops: list[np.ndarray]) -> np.ndarray:
    """ImageNet-normalised ``[B, 3, H, W]`` float32 from HxWx3 float crops in [0, 1]."""
    batch = (np.stack(crops).astype(np.float32) - _MEAN) / _STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
