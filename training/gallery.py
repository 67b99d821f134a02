"""``uwstego clusters``: example patches of every cluster, so that a person can name them.

Writes ``index.html`` (one row per cluster: colour, current name, share of pixels, examples),
``gallery.png`` (the same as one picture), ``cluster_XX.png`` strips, and ``classes.yaml``, the
names and colours file to edit. ``apply_names`` puts an edited file into the model checkpoint,
from where export copies it into the deploy bundle.

Examples come from the training feature cache (no backbone run) or from any image sources.
For each image and cluster, the candidate is the cluster's most confident pixel; each cluster
shows its most confident candidates from different images, outlined in the cluster's colour.
"""

from __future__ import annotations

import heapq
import html
import logging
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from edge.atomic import atomic_path, write_text_atomic
from edge.classes import ClassInfo, load_classes_yaml, save_classes_yaml
from training.artifact import TrainedModel, load_trained_model, save_trained_model
from training.data.crops import enhance_params, make_crops, render, to_uint8
from training.data.sources import ReadReport, Source, iter_frames
from training.features import FeatureCache
from training.inference import assign, to_network_input

log = logging.getLogger(__name__)

CLASSES_FILE = "classes.yaml"
TILE = 96
LABEL_WIDTH = 180


@dataclass(frozen=True)
class GalleryResult:
    html: Path
    png: Path
    classes_yaml: Path
    coverage: np.ndarray  # share of pixels per cluster over the images looked at
    examples: tuple[int, ...]  # examples found per cluster


def cache_views(model: TrainedModel, cache: FeatureCache, max_images: int,
                device: torch.device | str = "cpu") -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(uint8 crop, code [1,D,h,w])`` for up to ``max_images`` items spread over the cache."""
    _, head = model.build_modules(device)
    picks = np.unique(np.linspace(0, len(cache) - 1, min(max_images, len(cache))).astype(int))
    with torch.no_grad():
        for i in picks:
            yield cache.load_crop(int(i)), head(cache.feats([int(i)]).to(device))


def source_views(model: TrainedModel, sources: Sequence[Source], max_images: int,
                 device: torch.device | str = "cpu"
                 ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The same from frames of ``sources``, enhanced and centre-cropped as in training."""
    backbone, head = model.build_modules(device)
    report = ReadReport()
    frames = enhance_params(iter_frames(sources, report), model.enhancement)
    with torch.no_grad():
        for count, (frame, params) in enumerate(frames):
            if count >= max_images:
                break
            (crop,) = make_crops(render(frame.rgb, params, model.enhancement), "full",
                                 model.resolution)
            yield to_uint8(crop), head(backbone(to_network_input([crop], device)))


@dataclass(order=True)
class _Example:
    confidence: float
    image: int
    y: int
    x: int


def _tile(rgb: np.ndarray, mask: np.ndarray, ex: _Example, color: tuple[int, int, int],
          half: int) -> np.ndarray:
    h, w = mask.shape
    top = int(np.clip(ex.y - half, 0, max(h - 2 * half, 0)))
    left = int(np.clip(ex.x - half, 0, max(w - 2 * half, 0)))
    patch = rgb[top:top + 2 * half, left:left + 2 * half].copy()
    region = mask[top:top + 2 * half, left:left + 2 * half].astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(patch, contours, -1, color, 1)
    return cv2.resize(patch, (TILE, TILE), interpolation=cv2.INTER_NEAREST)


def collect(model: TrainedModel, views: Iterator[tuple[np.ndarray, torch.Tensor]],
            per_cluster: int, min_share: float = 0.01, progress: bool = True
            ) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Example tiles per cluster and the share of pixels each cluster took."""
    k = model.num_clusters
    best: list[list[_Example]] = [[] for _ in range(k)]
    images: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    counts = np.zeros(k, dtype=np.int64)
    for i, (rgb, code) in enumerate(tqdm(views, desc="clusters", unit="img",
                                         disable=not progress)):
        labels, conf = assign(code, model.centroids, rgb.shape[:2])
        conf, labels = conf[0].cpu().numpy(), labels[0].cpu().numpy()
        counts += np.bincount(labels.ravel(), minlength=k)
        for c in np.unique(labels):
            mask = labels == c
            if mask.mean() < min_share:
                continue
            flat = int(np.argmax(np.where(mask, conf, -np.inf)))
            ex = _Example(float(conf.flat[flat]), i, *np.unravel_index(flat, mask.shape))
            heap = best[c]
            (heapq.heappush if len(heap) < per_cluster else heapq.heappushpop)(heap, ex)
        images[i] = (rgb, labels)
        # Keep only images some heap still points at: memory stays at k * per_cluster images.
        wanted = {ex.image for heap in best for ex in heap}
        for j in [j for j in images if j not in wanted]:
            del images[j]
    tiles = []
    for c, heap in enumerate(best):
        rgb_half = model.resolution // 4
        tiles.append([_tile(images[ex.image][0], images[ex.image][1] == c, ex,
                            model.classes[c].color, rgb_half)
                      for ex in sorted(heap, reverse=True)])
    return tiles, counts / max(counts.sum(), 1)


def _label_cell(cls: ClassInfo, index: int, share: float) -> np.ndarray:
    cell = np.full((TILE, LABEL_WIDTH, 3), 255, dtype=np.uint8)
    cv2.rectangle(cell, (6, 6), (30, 30), cls.color, -1)
    cv2.rectangle(cell, (6, 6), (30, 30), (0, 0, 0), 1)
    for row, text in enumerate((f"#{index}", cls.name, f"{100 * share:.1f}% of pixels")):
        cv2.putText(cell, text[:22], (36 if row == 0 else 6, 24 + 26 * row),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return cell


def _strip(tiles: list[np.ndarray], per_cluster: int) -> np.ndarray:
    strip = np.full((TILE, per_cluster * (TILE + 2), 3), 235, dtype=np.uint8)
    for j, tile in enumerate(tiles):
        strip[:, j * (TILE + 2):j * (TILE + 2) + TILE] = tile
    return strip


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _html(model: TrainedModel, coverage: np.ndarray, model_path: str, names_path: Path) -> str:
    # Full paths: the command must work from whatever folder the page is read in.
    apply = shlex.join(["uwstego", "clusters", str(Path(model_path).resolve()), "--apply",
                        str(names_path.resolve())])
    rows = []
    for c, cls in enumerate(model.classes):
        r, g, b = cls.color
        rows.append(
            f'<tr><td>{c}</td><td><span class="sw" style="background:rgb({r},{g},{b})"></span>'
            f"</td><td>{html.escape(cls.name)}</td><td>{100 * coverage[c]:.1f}%</td>"
            f'<td><img src="cluster_{c:02d}.png" alt="cluster {c} examples"></td></tr>')
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>uwstego clusters</title>
<style>body{{font-family:sans-serif}} td{{padding:4px;vertical-align:middle}}
.sw{{display:inline-block;width:24px;height:24px;border:1px solid #000}}</style></head>
<body><h1>Clusters of {html.escape(model_path)}</h1>
<p>{model.num_clusters} clusters, backbone {html.escape(model.backbone)}. Each row shows the
most confident examples of one cluster, outlined in its colour. Name them in
<code>{CLASSES_FILE}</code> (same order, one entry per cluster), then run
<code>{html.escape(apply)}</code>.</p>
<table><tr><th>#</th><th>colour</th><th>name</th><th>pixels</th><th>examples</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""


def write_gallery(model: TrainedModel, views: Iterator[tuple[np.ndarray, torch.Tensor]],
                  out_dir: str | Path, per_cluster: int = 8, model_path: str = "model.pt",
                  progress: bool = True) -> GalleryResult:
    """Write the gallery files; an existing ``classes.yaml`` with the right count is kept."""
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    out_dir = Path(out_dir)
    tiles, coverage = collect(model, views, per_cluster, progress=progress)
    strips = [_strip(t, per_cluster) for t in tiles]
    for c, strip in enumerate(strips):
        _write_png(out_dir / f"cluster_{c:02d}.png", strip)
    grid = np.concatenate([np.concatenate([_label_cell(cls, c, coverage[c]), strips[c]], axis=1)
                           for c, cls in enumerate(model.classes)])
    png = out_dir / "gallery.png"
    _write_png(png, grid)
    yaml_path = out_dir / CLASSES_FILE
    page = write_text_atomic(out_dir / "index.html",
                             _html(model, coverage, model_path, yaml_path))
    try:
        load_classes_yaml(yaml_path, expected=model.num_clusters)
        log.info("kept the existing %s", yaml_path)
    except (FileNotFoundError, ValueError):
        save_classes_yaml(yaml_path, model.classes)
    return GalleryResult(page, png, yaml_path, coverage, tuple(len(t) for t in tiles))


def apply_names(model_path: str | Path, names_yaml: str | Path) -> TrainedModel:
    """Put the names and colours of ``names_yaml`` into the model file (atomically)."""
    model_path, names_yaml = Path(model_path), Path(names_yaml)
    if model_path.is_dir():
        model_path = model_path / "model.pt"
    if not names_yaml.is_file():
        raise FileNotFoundError(f"names file {names_yaml} not found (relative paths are read from "
                                f"the current folder, {Path.cwd()}); the gallery's index.html "
                                "gives the --apply command with full paths")
    model = load_trained_model(model_path)
    classes = load_classes_yaml(names_yaml, expected=model.num_clusters)
    named = model.with_classes(classes)
    save_trained_model(model_path, named)
    log.info("named the %d clusters of %s: %s", len(classes), model_path,
             ", ".join(c.name for c in classes))
    return named
