"""Naming the clusters of a model: the names YAML into ``model.pt``, equal names merged.

The names file has one entry per cluster. Clusters given the same name become one class
(:func:`uwstego.classes.merge_by_name`): the model keeps every centroid and gains a cluster -> class
table, which export applies after the nearest-centroid argmax, so bundles publish class indices
and list each merged class once (docs/ARCHITECTURE.md, "Naming and merging clusters").

The novelty calibration is per class. When the table changes it is computed again, exactly as
training did (same pixels, same seed: training/calibration.py), from the training feature cache
with the pixels regrouped by class: a merged class's tail is that of the union of its clusters'
pixels, which the clusters' own knots cannot give.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from uwstego.classes import load_classes_yaml, merge_by_name
from uwstego.novelty import NoveltyCalibration
from uwstego.training.artifact import TrainedModel, load_trained_model, save_trained_model
from uwstego.training.backbones import backbone_config
from uwstego.training.calibration import calibrate_cosines, graph_confidences
from uwstego.training.features import FeatureCache
from uwstego.training.head import SegmentationHead
from uwstego.training.settings import TrainSettings

log = logging.getLogger(__name__)


def model_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def class_calibration(model: TrainedModel, cluster_classes: tuple[int, ...], classes: int,
                      device: str | torch.device = "cpu") -> NoveltyCalibration | None:
    """The model's novelty calibration for another cluster -> class table (None without one)."""
    if model.calibration is None:
        return None
    cache_dir = model.provenance.get("feature_cache")
    if not cache_dir or not Path(cache_dir).is_dir():
        raise FileNotFoundError(
            f"merging clusters recomputes the novelty calibration per class from the training "
            f"feature cache ({cache_dir}), which is gone: rebuild it with the same train "
            "command, or give the clusters distinct names")
    defaults = TrainSettings()
    train = model.provenance.get("train_settings", {})
    head = SegmentationHead(model.head_config)
    head.load_state_dict(model.head_state)
    head.to(device)
    cosines, clusters = graph_confidences(
        head, FeatureCache.open(cache_dir), model.centroids, device,
        int(train.get("kmeans_samples", defaults.kmeans_samples)),
        int(train.get("seed", defaults.seed)),
        upsample=backbone_config(model.backbone).patch_size)
    return calibrate_cosines(cosines, np.asarray(cluster_classes)[clusters], classes,
                             model.calibration.quantile)


def apply_names(model_path: str | Path, names_yaml: str | Path,
                device: str | torch.device = "cpu") -> TrainedModel:
    """Put the names and colours of ``names_yaml`` into the model file (atomically); clusters
    with equal names merge into one class."""
    model_path, names_yaml = model_file(model_path), Path(names_yaml)
    if not names_yaml.is_file():
        raise FileNotFoundError(f"names file {names_yaml} not found (relative paths are read from "
                                f"the current folder, {Path.cwd()}); the gallery's index.html "
                                "gives the --apply command with full paths")
    model = load_trained_model(model_path)
    per_cluster = load_classes_yaml(names_yaml, expected=model.num_clusters, repeats=True)
    classes, table = merge_by_name(per_cluster)
    calibration = None
    if table != model.cluster_classes:
        calibration = class_calibration(model, table, len(classes), device)
    named = model.with_classes(classes, table, calibration)
    save_trained_model(model_path, named)
    for c, cls in enumerate(classes):
        members = [k for k, t in enumerate(table) if t == c]
        merged = f" (clusters {', '.join(map(str, members))} merged)" if len(members) > 1 else ""
        log.info("class %d %s%s", c, cls.name, merged)
    log.info("named the %d clusters of %s: %d classes", model.num_clusters, model_path,
             len(classes))
    return named
