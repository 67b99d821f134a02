"""``uwstego evaluate``: a trained model against labelled image/mask folders (docs/stego.md §8).

Protocol: each image is enhanced as in training (a fresh enhancer per still image), its short
side resized to ``resolution`` and centre-cropped square (nearest neighbour for the labels and,
by default, for the image too, as the official code does); the model's code is upsampled to the
crop, compared to the centroids by cosine and argmaxed (no CRF), optionally averaged with the
mirrored image. The confusion matrix of the whole set is matched to the classes once
(Hungarian) by :mod:`edge.scoring`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from edge.atomic import atomic_path, write_json_atomic, write_text_atomic
from edge.classes import ClassInfo, default_colors
from edge.enhance import Enhancer
from edge.scoring import Confusion, Scores
from training.artifact import TrainedModel
from training.data.sources import IMAGE_SUFFIXES, decode_image_file
from training.inference import segment, to_network_input
from training.masks import IGNORE, SUIM_CLASSES, read_mask_kind
from training.settings import EvalSettings

log = logging.getLogger(__name__)

CV2_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "area": cv2.INTER_AREA,
                     "bilinear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class EvalReport:
    scores: Scores
    paper_scores: Scores | None  # official extra-cluster arithmetic, when K > classes
    classes: tuple[ClassInfo, ...]
    cluster_names: tuple[str, ...]
    confusion: np.ndarray  # [clusters, classes] whole-set counts
    images: int
    settings: EvalSettings

    def table(self) -> str:
        lines = [f"{'class':<16} {'IoU %':>7}  cluster", "-" * 40]
        for c, iou, k in zip(self.classes, self.scores.per_class_iou, self.scores.assignment,
                             strict=True):
            shown = "   n/a" if np.isnan(iou) else f"{iou:7.2f}"
            lines.append(f"{c.name:<16} {shown}  {k} ({self.cluster_names[k]})")
        lines.append("-" * 40)
        lines.append(f"mIoU {self.scores.miou:.2f} %   accuracy {self.scores.accuracy:.2f} %   "
                     f"({self.images} images, {self.scores.pixels} pixels)")
        if self.paper_scores is not None:
            lines.append(f"paper-compatible (extra clusters dropped): mIoU "
                         f"{self.paper_scores.miou:.2f} %, accuracy "
                         f"{self.paper_scores.accuracy:.2f} %")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": self.scores.to_dict(),
            "paper_compatible_scores": (self.paper_scores.to_dict()
                                        if self.paper_scores is not None else None),
            "classes": [c.name for c in self.classes],
            "clusters": list(self.cluster_names),
            "confusion": self.confusion.tolist(),
            "images": self.images,
            "settings": self.settings.to_dict(),
        }


def pair_files(images_dir: str | Path, masks_dir: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by file stem; an image without a mask is an error."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"folder {d} does not exist")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images in {images_dir}")
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise ValueError(f"{len(missing)} image(s) in {images_dir} have no mask of the same name "
                         f"in {masks_dir}: {missing[:5]}")
    return [(p, masks[p.stem]) for p in images]


def resize_center_crop(img: np.ndarray, resolution: int, interpolation: str) -> np.ndarray:
    """Short side to ``resolution`` then the central square, same geometry for any method."""
    h, w = img.shape[:2]
    scale = resolution / min(h, w)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    if (size[1], size[0]) != (h, w):
        img = cv2.resize(img, size, interpolation=CV2_INTERPOLATION[interpolation])
    top = round((img.shape[0] - resolution) / 2)
    left = round((img.shape[1] - resolution) / 2)
    return img[top:top + resolution, left:left + resolution]


def _gt_classes(masks: Sequence[np.ndarray], settings: EvalSettings,
                kinds: set[str]) -> tuple[ClassInfo, ...]:
    if kinds == {"suim"} and settings.num_classes in (None, len(SUIM_CLASSES)):
        return SUIM_CLASSES
    n = settings.num_classes
    if n is None:
        valid = [int(m[m != IGNORE].max()) for m in masks if (m != IGNORE).any()]
        if not valid:
            raise ValueError(f"every mask pixel is 'ignore' ({IGNORE}): nothing to score")
        n = max(valid) + 1
    return tuple(ClassInfo(f"class_{i}", c) for i, c in enumerate(default_colors(n)))


def evaluate(model: TrainedModel, images_dir: str | Path, masks_dir: str | Path,
             settings: EvalSettings | None = None, device: str | torch.device = "cpu",
             out_dir: str | Path | None = None, progress: bool = True) -> EvalReport:
    """Score ``model`` on image/mask folder pairs; with ``out_dir``, write the report files."""
    settings = settings or EvalSettings()
    pairs = pair_files(images_dir, masks_dir)
    backbone, head = model.build_modules(device)
    if settings.resolution % backbone.patch_size:
        raise ValueError(f"evaluation resolution {settings.resolution} is not a multiple of the "
                         f"patch size {backbone.patch_size}")
    read = [read_mask_kind(m, settings.mask_kind) for _, m in pairs]
    kinds = {kind for _, kind in read}
    masks = [resize_center_crop(m, settings.resolution, "nearest") for m, _ in read]
    classes = _gt_classes(masks, settings, kinds)
    n_classes = len(classes)
    confusion = Confusion(n_classes, max(0, model.num_clusters - n_classes))
    for (img_path, _), mask in tqdm(list(zip(pairs, masks, strict=True)), desc="evaluate",
                                    unit="img", disable=not progress):
        rgb = decode_image_file(img_path)
        img = resize_center_crop(Enhancer(model.enhancement).apply(rgb), settings.resolution,
                                 settings.interpolation)
        labels, _ = segment(backbone, head, model.centroids, to_network_input([img], device),
                            flip=settings.flip)
        confusion.update(labels[0].cpu().numpy(), mask)
    scores = confusion.scores()
    paper = confusion.scores(paper_compatible=True) if confusion.extra_clusters else None
    report = EvalReport(scores, paper, classes, tuple(c.name for c in model.classes),
                        confusion.matrix.copy(), len(pairs), settings)
    log.info("mIoU %.2f %%, accuracy %.2f %% on %d images", scores.miou, scores.accuracy,
             len(pairs))
    if out_dir is not None:
        write_report(report, out_dir)
    return report


def write_report(report: EvalReport, out_dir: str | Path) -> None:
    """``scores.json``, ``per_class_iou.txt`` and ``confusion.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "scores.json", report.to_dict())
    write_text_atomic(out_dir / "per_class_iou.txt", report.table() + "\n")
    plot_confusion(report, out_dir / "confusion.png")


def plot_confusion(report: EvalReport, path: str | Path) -> None:
    """Row-normalised confusion (class -> cluster), clusters in matched order, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = report.confusion
    matched = list(report.scores.assignment)
    order = matched + [k for k in range(conf.shape[0]) if k not in matched]
    m = conf[order].T.astype(np.float64)  # rows: classes, columns: clusters
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n_cls, n_clu = frac.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n_clu, 1.0 + 0.5 * n_cls), dpi=100)
    ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n_cls):
        for j in range(n_clu):
            if frac[i, j] >= 0.005:
                ax.text(j, i, f"{100 * frac[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(n_clu), [report.cluster_names[k] for k in order], rotation=60,
                  ha="right", fontsize=7)
    ax.set_yticks(range(n_cls), [c.name for c in report.classes], fontsize=7)
    ax.set_xlabel("cluster (matched order)")
    ax.set_ylabel("ground truth")
    ax.set_title(f"mIoU {report.scores.miou:.1f} %, accuracy {report.scores.accuracy:.1f} % "
                 "(% of each class's pixels)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
