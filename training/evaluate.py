"""``uwstego evaluate``: a trained model or an exported bundle against labelled image/mask
folders (docs/stego.md §8).

Protocol: each image is enhanced as in training (a fresh enhancer per still image), its short
side resized to ``resolution`` and centre-cropped square (nearest neighbour for the labels and,
by default, for the image too, as the official code does); the model's code is upsampled to the
crop, compared to the centroids by cosine and argmaxed (no CRF), optionally averaged with the
mirrored image. A bundle runs its deployed graph on the whole image instead
(:mod:`uwstego.training.eval_predict`). The confusion matrix of the whole set is matched to the
classes
once (Hungarian) by :mod:`uwstego.scoring`; with fewer clusters than classes, the classes left over
are matched to no cluster ("(none)", IoU 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from uwstego.atomic import atomic_path, write_json_atomic, write_text_atomic
from uwstego.bundle import Bundle
from uwstego.classes import ClassInfo
from uwstego.contract import IMAGE_SUFFIXES
from uwstego.scoring import Confusion, Scores
from uwstego.training.artifact import TrainedModel
from uwstego.training.data.sources import decode_image_file
from uwstego.training.eval_overlays import OVERLAY_DIR, pick_overlays, write_overlays
from uwstego.training.eval_predict import open_predictor, resize_center_crop
from uwstego.training.masks import GroundTruth, ground_truth, read_mask_kind
from uwstego.training.settings import EvalSettings

log = logging.getLogger(__name__)
NONE = "(none)"


@dataclass(frozen=True)
class EvalReport:
    scores: Scores
    paper_scores: Scores | None  # official extra-cluster arithmetic, when K > classes
    truth: GroundTruth
    cluster_names: tuple[str, ...]
    confusion: np.ndarray  # [clusters, classes] whole-set counts, real clusters only
    images: int
    settings: EvalSettings
    model_kind: str = "model"  # "model" (PyTorch) or "bundle" (the deployed graph)

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return self.truth.classes

    @property
    def matched(self) -> tuple[int | None, ...]:
        """The cluster matched to each class; None where there are fewer clusters than classes
        and the class got none (the scorer pads with clusters that never fire)."""
        return tuple(k if k < len(self.cluster_names) else None for k in self.scores.assignment)

    def table(self) -> str:
        lines = [f"{'class':<16} {'IoU %':>7}  cluster", "-" * 40]
        for c, iou, k in zip(self.classes, self.scores.per_class_iou, self.matched,
                             strict=True):
            shown = "   n/a" if np.isnan(iou) else f"{iou:7.2f}"
            cluster = NONE if k is None else f"{k} ({self.cluster_names[k]})"
            lines.append(f"{c.name:<16} {shown}  {cluster}")
        lines.append("-" * 40)
        lines.append(self.truth.describe())
        lines.append(f"mIoU {self.scores.miou:.2f} %   accuracy {self.scores.accuracy:.2f} %   "
                     f"({self.images} images, {self.scores.pixels} pixels)")
        if self.paper_scores is not None:
            lines.append(f"paper-compatible (extra clusters dropped): mIoU "
                         f"{self.paper_scores.miou:.2f} %, accuracy "
                         f"{self.paper_scores.accuracy:.2f} %")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        scores = {**self.scores.to_dict(), "assignment": list(self.matched)}
        return {
            "model_kind": self.model_kind,
            "scores": scores,
            "paper_compatible_scores": (self.paper_scores.to_dict()
                                        if self.paper_scores is not None else None),
            "classes": [c.name for c in self.classes],
            "ground_truth": self.truth.to_dict(),
            "clusters": list(self.cluster_names),
            "confusion": self.confusion.T.tolist(),
            "confusion_rows": "ground-truth class",
            "confusion_columns": "cluster",
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


def evaluate(model: TrainedModel | Bundle | str | Path, images_dir: str | Path,
             masks_dir: str | Path, settings: EvalSettings | None = None,
             device: str | torch.device = "cpu", out_dir: str | Path | None = None,
             progress: bool = True, overlays: int = 4) -> EvalReport:
    """Score a model or bundle (or a path to either) on image/mask folder pairs; with
    ``out_dir``, write the report files and ``overlays`` example pictures."""
    settings = settings or EvalSettings()
    pairs = pair_files(images_dir, masks_dir)
    predictor = open_predictor(model, settings, device)
    read = [read_mask_kind(m, settings.mask_kind) for _, m in pairs]
    masks = [resize_center_crop(m, settings.resolution, "nearest") for m, _ in read]
    truth = ground_truth(masks, {kind for _, kind in read}, settings.num_classes, masks_dir)
    log.info("%s", truth.describe())
    n_classes, n_clusters = len(truth.classes), len(predictor.classes)
    if n_clusters < n_classes:
        left = n_classes - n_clusters
        log.warning("the model has %d clusters for %d ground-truth classes: %d %s will match "
                    "no cluster", n_clusters, n_classes, left, "class" if left == 1 else "classes")
    confusion = Confusion(n_classes, max(0, n_clusters - n_classes))
    shown = pick_overlays(len(pairs), overlays if out_dir is not None else 0)
    examples = []
    for i, ((img_path, _), mask) in enumerate(tqdm(list(zip(pairs, masks, strict=True)),
                                                   desc="evaluate", unit="img",
                                                   disable=not progress)):
        rgb = decode_image_file(img_path)
        labels = predictor.predict(rgb)
        confusion.update(labels, mask)
        if i in shown:
            examples.append((img_path, resize_center_crop(rgb, settings.resolution,
                                                          settings.interpolation),
                             labels, mask))
    scores = confusion.scores()
    paper = confusion.scores(paper_compatible=True) if confusion.extra_clusters else None
    report = EvalReport(scores, paper, truth, tuple(c.name for c in predictor.classes),
                        confusion.matrix[:n_clusters].copy(), len(pairs), settings,
                        predictor.kind)
    log.info("mIoU %.2f %%, accuracy %.2f %% on %d images", scores.miou, scores.accuracy,
             len(pairs))
    if out_dir is not None:
        write_report(report, out_dir)
        write_overlays(Path(out_dir) / OVERLAY_DIR, examples, predictor.classes,
                       truth.classes, report.matched)
    return report


def write_report(report: EvalReport, out_dir: str | Path) -> None:
    """``scores.json``, ``per_class_iou.txt`` and ``confusion.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "scores.json", report.to_dict())
    write_text_atomic(out_dir / "per_class_iou.txt", report.table() + "\n")
    plot_confusion(report, out_dir / "confusion.png")


def plot_confusion(report: EvalReport, path: str | Path) -> None:
    """Row-normalised confusion, ground-truth classes on rows and clusters on columns (as in
    the replay report), clusters in matched order, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = report.confusion
    matched = [k for k in report.matched if k is not None]
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
    ax.set_xlabel("columns: cluster (matched order)")
    ax.set_ylabel("rows: ground-truth class")
    ax.set_title(f"mIoU {report.scores.miou:.1f} %, accuracy {report.scores.accuracy:.1f} % "
                 "(% of each class's pixels)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
