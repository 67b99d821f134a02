"""Patch k-means mIoU: how well the last-layer patch tokens of a backbone separate the classes
of labelled frames (a synthetic dive), with no training on them (docs/pretrain.md §7).

Each frame is enhanced, resized (short side ``size``, both sides cut to the patch size), its
label map reduced to one label per patch (the majority, ignore when most of it is ignore),
the L2-normalised tokens of all frames clustered together by spherical k-means, and the
clusters matched to the classes by the Hungarian algorithm over the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from uwstego.contract import IGNORE_LABEL, SYNTH_IMAGES_DIR
from uwstego.enhance import EnhanceSettings
from uwstego.scoring import unsupervised_scores
from uwstego.training.backbones.vit import DinoViT
from uwstego.training.clusters import spherical_kmeans, unit_rows
from uwstego.training.data.crops import enhance_params, normalise, render
from uwstego.training.data.sources import ImageFolder, ReadReport, iter_frames

LABELS_DIR = "labels"


@dataclass(frozen=True)
class LabelledFrames:
    images: np.ndarray   # [N, 3, H, W] float32, ImageNet-normalised
    labels: np.ndarray   # [N, H / p, W / p] uint8 patch labels, IGNORE_LABEL = ignore
    n_classes: int


def patch_labels(labels: np.ndarray, patch: int, n_classes: int) -> np.ndarray:
    """The majority label of each ``patch x patch`` cell (ignore counts as a label)."""
    h, w = labels.shape[0] // patch, labels.shape[1] // patch
    cells = labels[:h * patch, :w * patch].reshape(h, patch, w, patch).transpose(0, 2, 1, 3)
    cells = np.where(cells < n_classes, cells, n_classes).reshape(h, w, patch * patch)
    counts = np.stack([(cells == c).sum(-1) for c in range(n_classes + 1)], axis=-1)
    major = counts.argmax(-1)
    return np.where(major == n_classes, IGNORE_LABEL, major).astype(np.uint8)


def _grid_size(height: int, width: int, short_side: int, patch: int) -> tuple[int, int]:
    scale = short_side / min(height, width)
    return (max(patch, round(height * scale) // patch * patch),
            max(patch, round(width * scale) // patch * patch))


def load_labelled_dive(dive: Path, enhancement: EnhanceSettings, short_side: int, patch: int,
                       n_classes: int, max_frames: int = 32) -> LabelledFrames:
    """Up to ``max_frames`` frames (evenly spaced) of a ``uwstego synth`` folder-format dive."""
    images_dir, labels_dir = dive / SYNTH_IMAGES_DIR, dive / LABELS_DIR
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise ValueError(f"{dive}: an evaluation dive needs {SYNTH_IMAGES_DIR}/ and "
                         f"{LABELS_DIR}/ (render it with uwstego synth --format folders)")
    folder = ImageFolder(images_dir)
    paths = folder.paths()
    if not paths:
        raise ValueError(f"{images_dir} holds no images")
    chosen = {str(p) for p in paths[::max(1, -(-len(paths) // max_frames))]}
    images, labels = [], []
    report = ReadReport()
    for frame, params in enhance_params(iter_frames([folder], report), enhancement):
        if frame.ref.path not in chosen:
            continue
        label_path = labels_dir / Path(frame.ref.path).name
        if not label_path.is_file():
            raise ValueError(f"{label_path} is missing: every image of {dive} needs its labels")
        img = render(frame.rgb, params, enhancement)
        h, w = _grid_size(img.shape[0], img.shape[1], short_side, patch)
        interp = cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_CUBIC
        images.append(cv2.resize(img, (w, h), interpolation=interp))
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        labels.append(patch_labels(label, patch, n_classes))
    return LabelledFrames(normalise(images), np.stack(labels), n_classes)


@torch.no_grad()
def patch_tokens(backbone: DinoViT, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """``[N * h * w, C]`` last-layer patch tokens (after the final norm), row-major per frame."""
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).to(device)
        feats = backbone(x).float()
        out.append(feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).cpu().numpy())
    backbone.train(was_training)
    return np.concatenate(out)


def patch_kmeans_miou(backbone: DinoViT, data: LabelledFrames, clusters: int,
                      seed: int = 0) -> float:
    """mIoU (percent) of k-means clusters of the patch tokens against the patch labels."""
    tokens = unit_rows(patch_tokens(backbone, data.images))
    centroids = spherical_kmeans(tokens, clusters, seed=seed)
    preds = (tokens @ centroids.T).argmax(1).reshape(data.labels.shape)
    return float(unsupervised_scores(np.asarray(preds), np.asarray(data.labels), data.n_classes,
                                     extra_clusters=max(0, clusters - data.n_classes)).miou)
