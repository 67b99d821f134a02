"""Ground-truth masks for evaluation: SUIM-style colour masks and plain index masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from uwstego.classes import ClassInfo, default_colors
from uwstego.contract import IGNORE_LABEL
from uwstego.image_files import read_image_file

IGNORE = IGNORE_LABEL
MASK_KINDS = ("auto", "suim", "index")
# A mask is flat regions of a few colours. Measured on SUIM: >= 99 % of its pixels are palette
# colours and equal their right neighbour; its photographs score at most 34 % / 64 %.
MIN_MASK_FRACTION = 0.9
# Channels this close to 0 or 255 count as palette colours (boundary pixels stray a little).
PALETTE_TOLERANCE = 64
# Below this many pixels the statistics say nothing (tests, thumbnails): not checked.
MIN_CHECKED_PIXELS = 256

# SUIM (Islam et al. 2020): each RGB channel is one bit, index = 4 R + 2 G + B.
SUIM_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo("water", (0, 0, 0)),            # BW: background / waterbody
    ClassInfo("diver", (0, 0, 255)),          # HD: human divers
    ClassInfo("plants", (0, 255, 0)),         # PF: aquatic plants and sea-grass
    ClassInfo("wreck", (0, 255, 255)),        # WR: wrecks and ruins
    ClassInfo("robot", (255, 0, 0)),          # RO: robots and instruments
    ClassInfo("reef", (255, 0, 255)),         # RI: reefs and invertebrates
    ClassInfo("fish", (255, 255, 0)),         # FV: fish and vertebrates
    ClassInfo("seafloor", (255, 255, 255)),   # SR: sea-floor and rocks
)


def decode_suim(mask_rgb: np.ndarray) -> np.ndarray:
    """RGB colour mask -> uint8 class indices; channels are thresholded at 127 like the
    official SUIM loader, because some masks carry off-palette boundary colours."""
    bits = (mask_rgb[..., :3] > 127).astype(np.uint8)
    return 4 * bits[..., 0] + 2 * bits[..., 1] + bits[..., 2]


def _refuse_photographs(path: Path, raw: np.ndarray, kind: str) -> None:
    """Stop on an image that is not a mask (a photograph passed as --masks scores nonsense)."""
    if raw.shape[0] * raw.shape[1] < MIN_CHECKED_PIXELS or raw.shape[1] < 2:
        return
    if kind == "suim":
        rgb = raw[..., :3]
        fraction = float(((rgb <= PALETTE_TOLERANCE) | (rgb >= 255 - PALETTE_TOLERANCE))
                         .all(axis=-1).mean())
        what, name = "are SUIM palette colours", "a SUIM colour mask"
    else:
        index = raw if raw.ndim == 2 else raw[..., 0]
        fraction = float((index[:, 1:] == index[:, :-1]).mean())
        what, name = "equal their neighbour, as class ids in regions do", "an index mask"
    if fraction < MIN_MASK_FRACTION:
        raise ValueError(f"{path} does not look like {name}: only {fraction:.0%} of its "
                         f"pixels {what} (a photograph?); masks must be index PNGs or SUIM "
                         "colour masks")


def read_mask_kind(path: str | Path, kind: str = "auto") -> tuple[np.ndarray, str]:
    """``(uint8 HxW class indices, kind read)`` from a mask image (255 = ignore).

    ``kind`` "suim" decodes colour masks, "index" reads the pixel values as indices, "auto"
    picks "suim" for files with colour channels and "index" for single-channel ones (by the
    file's layout, not its content, so an all-white SUIM mask is still sea-floor).
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
    path = Path(path)
    raw = read_image_file(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"{path}: not a readable image")
    channels = raw.shape[2] if raw.ndim == 3 else 1
    if kind == "auto":
        kind = "suim" if channels >= 3 else "index"
    if kind == "suim":
        if channels < 3:
            raise ValueError(f"{path}: a SUIM colour mask needs 3 channels, got {raw.shape}")
        _refuse_photographs(path, raw, kind)
        return decode_suim(cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)), kind
    if channels > 1 and not (np.array_equal(raw[..., 0], raw[..., 1])
                             and np.array_equal(raw[..., 1], raw[..., 2])):
        raise ValueError(f"{path}: an index mask must have one channel (or three equal ones); "
                         "use --mask-kind suim for colour masks")
    if raw.dtype != np.uint8:
        raise ValueError(f"{path}: index masks must be 8-bit, got {raw.dtype}")
    _refuse_photographs(path, raw, kind)
    return (raw if raw.ndim == 2 else raw[..., 0]), kind


@dataclass(frozen=True)
class GroundTruth:
    """The classes a set of masks is scored against, and why there are that many."""

    classes: tuple[ClassInfo, ...]
    kind: str  # "suim" or "index"
    pixels: tuple[int, ...]  # scored pixels per class
    reason: str

    @property
    def present(self) -> tuple[int, ...]:
        return tuple(i for i, n in enumerate(self.pixels) if n)

    def describe(self) -> str:
        """One line: how many classes, from what, and which never appear."""
        absent = [f"{i} ({self.classes[i].name})" for i, n in enumerate(self.pixels) if not n]
        never = f": never present {', '.join(absent)}" if absent else ""
        return (f"{len(self.classes)} ground-truth classes ({self.reason}); "
                f"{len(self.present)} of them found in the masks{never}")

    def to_dict(self) -> dict[str, Any]:
        return {"classes": [c.name for c in self.classes], "mask_kind": self.kind,
                "reason": self.reason, "present": list(self.present),
                "pixels": list(self.pixels), "summary": self.describe()}


def ground_truth(masks: Sequence[np.ndarray], kinds: set[str], num_classes: int | None,
                 folder: str | Path) -> GroundTruth:
    """The classes of ``masks`` (read as ``kinds``): SUIM's 8 for colour masks, ``num_classes``
    when given, else the largest index + 1 (so a class that never occurs at the top of the
    range is not counted: the same images can then give fewer classes as index masks than
    as colour masks, and the description says so)."""
    kind = "suim" if kinds == {"suim"} else "index"
    if kind == "suim" and num_classes in (None, len(SUIM_CLASSES)):
        classes = SUIM_CLASSES
        reason = (f"SUIM colour masks in {folder}: one bit per RGB channel encodes "
                  f"{len(SUIM_CLASSES)} colours")
    elif num_classes is not None:
        classes = tuple(ClassInfo(f"class_{i}", c)
                        for i, c in enumerate(default_colors(num_classes)))
        reason = f"--num-classes {num_classes}"
    else:
        valid = [int(m[m != IGNORE].max()) for m in masks if (m != IGNORE).any()]
        if not valid:
            raise ValueError(f"every mask pixel in {folder} is 'ignore' ({IGNORE}): nothing to "
                             "score")
        n = max(valid) + 1
        classes = tuple(ClassInfo(f"class_{i}", c) for i, c in enumerate(default_colors(n)))
        reason = (f"index masks in {folder}: the largest index is {n - 1}, so {n} classes are "
                  "inferred; pass --num-classes if the dataset defines more")
    counts = np.zeros(len(classes), dtype=np.int64)
    for m in masks:
        counts += np.bincount(m[m < len(classes)].ravel(), minlength=len(classes))
    return GroundTruth(classes, kind, tuple(int(c) for c in counts), reason)
