"""Percent cover of the ground-truth labels, per frame (docs/survey.md §5).

The truth a survey scientist would annotate: the share of each ground-truth class among the
labelled pixels of a frame (the ignore label is not a class and is left out of the share).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uwstego.bags import Bag
from uwstego.contract import IGNORE_LABEL
from uwstego.replay.source import labels_from_image


def label_cover(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of each class ``0..n_classes-1`` among the pixels that are not ignored (NaN for
    all classes when every pixel is ignored)."""
    values = labels.reshape(-1)
    counts = np.bincount(values[values != IGNORE_LABEL], minlength=n_classes)[:n_classes]
    total = counts.sum()
    return counts / total if total else np.full(n_classes, np.nan)


def truth_cover(bag: Bag, topic: str, stamps_ns: Sequence[int],
                n_classes: int) -> np.ndarray:
    """``[frames, n_classes]`` ground-truth cover at ``stamps_ns`` (header stamps of the
    replayed frames); NaN rows for frames without a ground-truth image."""
    wanted = {int(s): i for i, s in enumerate(stamps_ns)}
    cover = np.full((len(wanted), n_classes), np.nan)
    for image in bag.images(topic):
        row = wanted.get(image.stamp_ns)
        if row is not None:
            cover[row] = label_cover(labels_from_image(image.rgb), n_classes)
    return cover
