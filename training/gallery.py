"""``uwstego clusters``: example patches of every cluster, so that a person can name them.

Writes ``index.html`` (the model's trust facts, then one row per cluster: colour, class, share
of pixels, examples with their source file and time, each linking to its full frame in
``frames/``), ``gallery.png`` (the rows as one picture), ``cluster_XX.png`` strips, ``tiles/``
and ``classes.yaml``, the names and colours file to edit (one entry per cluster; equal names
merge clusters, :mod:`uwstego.training.naming`).

Examples come from the training feature cache (no backbone run) or from any image sources.
For each image and cluster, the candidate is the cluster's most confident pixel; each cluster
shows its most confident candidates from different images, outlined in its class's colour.
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

from uwstego.atomic import atomic_path, write_text_atomic
from uwstego.classes import ClassInfo, load_classes_yaml, save_classes_yaml
from uwstego.training.artifact import TrainedModel
from uwstego.training.data.crops import enhance_params, make_crops, render, to_uint8
from uwstego.training.data.sources import FrameRef, ReadReport, Source, iter_frames
from uwstego.training.features import FeatureCache
from uwstego.training.gallery_frames import FRAMES_DIR, ExampleSource, describe, write_full_frame
from uwstego.training.inference import assign, to_network_input
from uwstego.training.trust import model_trust
from uwstego.trust import ModelTrust

log = logging.getLogger(__name__)

CLASSES_FILE = "classes.yaml"
TILES_DIR = "tiles"
TILE = 128
LABEL_WIDTH = 180


@dataclass(frozen=True)
class View:
    """One crop the head saw: the picture, its code and where it was cut from."""

    crop: np.ndarray  # uint8 RGB square
    code: torch.Tensor  # [1, D, h, w]
    ref: FrameRef
    crop_name: str


@dataclass(frozen=True)
class GalleryResult:
    html: Path
    png: Path
    classes_yaml: Path
    coverage: np.ndarray  # share of pixels per cluster over the images looked at
    examples: tuple[int, ...]  # examples found per cluster


def cache_views(model: TrainedModel, cache: FeatureCache, max_images: int,
                device: torch.device | str = "cpu") -> Iterator[View]:
    """Up to ``max_images`` items spread over the cache."""
    _, head = model.build_modules(device)
    picks = np.unique(np.linspace(0, len(cache) - 1, min(max_images, len(cache))).astype(int))
    with torch.no_grad():
        for i in picks:
            item = cache.item(int(i))
            ref = FrameRef.from_dict({k: item[k] for k in ("kind", "path", "index", "topic",
                                                           "t_ns") if k in item})
            yield View(cache.load_crop(int(i)), head(cache.feats([int(i)]).to(device)), ref,
                       item["crop"])


def source_views(model: TrainedModel, sources: Sequence[Source], max_images: int,
                 device: torch.device | str = "cpu") -> Iterator[View]:
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
            yield View(to_uint8(crop), head(backbone(to_network_input([crop], device))),
                       frame.ref, "full")


@dataclass(order=True)
class _Example:
    confidence: float
    image: int
    y: int
    x: int


@dataclass(frozen=True)
class Tile:
    picture: np.ndarray  # TILE x TILE RGB
    source: ExampleSource


def _tile(view: View, mask: np.ndarray, ex: _Example, color: tuple[int, int, int],
          half: int) -> Tile:
    h, w = mask.shape
    top = int(np.clip(ex.y - half, 0, max(h - 2 * half, 0)))
    left = int(np.clip(ex.x - half, 0, max(w - 2 * half, 0)))
    patch = view.crop[top:top + 2 * half, left:left + 2 * half].copy()
    region = mask[top:top + 2 * half, left:left + 2 * half].astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(patch, contours, -1, color, 1)
    picture = cv2.resize(patch, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
    return Tile(picture, ExampleSource(view.ref, view.crop_name, top, left, 2 * half))


def collect(model: TrainedModel, views: Iterator[View], per_cluster: int,
            min_share: float = 0.01, progress: bool = True
            ) -> tuple[list[list[Tile]], np.ndarray]:
    """Example tiles per cluster and the share of pixels each cluster took."""
    k = model.num_clusters
    best: list[list[_Example]] = [[] for _ in range(k)]
    images: dict[int, tuple[View, np.ndarray]] = {}
    counts = np.zeros(k, dtype=np.int64)
    for i, view in enumerate(tqdm(views, desc="clusters", unit="img", disable=not progress)):
        labels, conf = assign(view.code, model.centroids, view.crop.shape[:2])
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
        images[i] = (view, labels)
        # Keep only images some heap still points at: memory stays at k * per_cluster images.
        wanted = {ex.image for heap in best for ex in heap}
        for j in [j for j in images if j not in wanted]:
            del images[j]
    tiles = []
    colors = [cls.color for cls in model.cluster_names]
    for c, heap in enumerate(best):
        tiles.append([_tile(images[ex.image][0], images[ex.image][1] == c, ex, colors[c],
                            model.resolution // 4)
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


def _strip(tiles: list[Tile], per_cluster: int) -> np.ndarray:
    strip = np.full((TILE, per_cluster * (TILE + 2), 3), 235, dtype=np.uint8)
    for j, tile in enumerate(tiles):
        strip[:, j * (TILE + 2):j * (TILE + 2) + TILE] = tile.picture
    return strip


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _facts_html(facts: ModelTrust, classes: int) -> str:
    merged = f" ({classes} classes after merging)" if classes < facts.clusters else ""
    steps = "not recorded" if facts.steps is None else str(facts.steps)
    table = [("weights", facts.weights), ("backbone", facts.backbone),
             ("training data", facts.data), ("training steps", steps),
             ("clusters", f"{facts.clusters}{merged}")]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in table)
    banner = ('<p class="banner">RANDOM WEIGHTS: this model was trained on a randomly '
              "initialised backbone. Its clusters mean nothing; name them only to test the "
              "workflow, and never deploy it.</p>") if facts.random else ""
    return f'{banner}<table class="facts">{rows}</table>'


def _examples_html(c: int, tiles: list[Tile], links: list[str]) -> str:
    figures = []
    for j, (tile, link) in enumerate(zip(tiles, links, strict=True)):
        source, when = describe(tile.source.ref)
        figures.append(
            f'<figure><a href="{FRAMES_DIR}/{link}" title="{html.escape(tile.source.ref.path)}">'
            f'<img src="{TILES_DIR}/cluster_{c:02d}_{j}.png" alt="cluster {c} example {j}">'
            f"</a><figcaption>{html.escape(source)}<br>{html.escape(when)}</figcaption>"
            "</figure>")
    return "".join(figures)


def _html(model: TrainedModel, coverage: np.ndarray, tiles: list[list[Tile]],
          links: list[list[str]], model_path: str, names_path: Path) -> str:
    # Full paths: the command must work from whatever folder the page is read in.
    apply = shlex.join(["uwstego", "clusters", str(Path(model_path).resolve()), "--apply",
                        str(names_path.resolve())])
    facts = model_trust(model.provenance, model.backbone, model.num_clusters)
    rows = []
    for c, cls in enumerate(model.cluster_names):
        r, g, b = cls.color
        members = [k for k, t in enumerate(model.cluster_classes)
                   if t == model.cluster_classes[c] and k != c]
        merged = (f"<br><small>merged with #{', #'.join(map(str, members))}</small>"
                  if members else "")
        rows.append(
            f'<tr><td>{c}</td><td><span class="sw" style="background:rgb({r},{g},{b})"></span>'
            f"</td><td>{html.escape(cls.name)}{merged}</td><td>{100 * coverage[c]:.1f}%</td>"
            f"<td>{_examples_html(c, tiles[c], links[c])}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>uwstego clusters</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px;vertical-align:middle;text-align:left}}
.sw{{display:inline-block;width:24px;height:24px;border:1px solid #000}}
.banner{{background:#b00020;color:#fff;font-weight:bold;padding:10px}}
figure{{display:inline-block;margin:2px;font-size:11px;text-align:center;max-width:{TILE}px}}
figure img{{display:block}}</style></head>
<body><h1>Clusters of {html.escape(model_path)}</h1>
{_facts_html(facts, len(model.classes))}
<p>Each row shows the most confident examples of one cluster, outlined in its class's colour;
click an example for its whole frame. Name the clusters in <code>{CLASSES_FILE}</code> (same
order, one entry per cluster; clusters given the same name merge into one class), then run
<code>{html.escape(apply)}</code>.</p>
<table><tr><th>#</th><th>colour</th><th>class</th><th>pixels</th><th>examples</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""


def _fits(names_yaml: Path, clusters: int) -> bool:
    """A readable names file with one entry per cluster."""
    try:
        load_classes_yaml(names_yaml, expected=clusters, repeats=True)
    except (FileNotFoundError, ValueError):
        return False
    return True


def write_gallery(model: TrainedModel, views: Iterator[View], out_dir: str | Path,
                  per_cluster: int = 8, model_path: str = "model.pt",
                  progress: bool = True, keep_names: bool = True) -> GalleryResult:
    """Write the gallery files. ``keep_names``: an existing ``classes.yaml`` with an entry
    per cluster is kept (names being edited); otherwise it is written from the model."""
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    out_dir = Path(out_dir)
    tiles, coverage = collect(model, views, per_cluster, progress=progress)
    strips = [_strip(t, per_cluster) for t in tiles]
    for c, strip in enumerate(strips):
        _write_png(out_dir / f"cluster_{c:02d}.png", strip)
    links = []
    for c, (row, cls) in enumerate(zip(tiles, model.cluster_names, strict=True)):
        for j, tile in enumerate(row):
            _write_png(out_dir / TILES_DIR / f"cluster_{c:02d}_{j}.png", tile.picture)
        links.append([write_full_frame(out_dir / FRAMES_DIR, tile.source, model.resolution,
                                       cls.color) for tile in row])
    grid = np.concatenate([np.concatenate([_label_cell(cls, c, coverage[c]), strips[c]], axis=1)
                           for c, cls in enumerate(model.cluster_names)])
    png = out_dir / "gallery.png"
    _write_png(png, grid)
    yaml_path = out_dir / CLASSES_FILE
    page = write_text_atomic(out_dir / "index.html",
                             _html(model, coverage, tiles, links, model_path, yaml_path))
    if keep_names and _fits(yaml_path, model.num_clusters):
        log.info("kept the existing %s", yaml_path)
    else:
        save_classes_yaml(yaml_path, model.cluster_names)
    return GalleryResult(page, png, yaml_path, coverage, tuple(len(t) for t in tiles))
