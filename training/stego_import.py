"""A published STEGO checkpoint as a uwstego ``model.pt``: no training, same labels.

The official Lightning module keeps the DINO ViT under ``net.model.*``, the head's linear branch
as ``net.cluster1.0`` (1x1 conv ``C -> D``), its nonlinear branch as ``net.cluster2.0`` /
``net.cluster2.2`` (``C -> C``, ReLU, ``C -> D``; absent for a linear head), the cluster probe
``cluster_probe.clusters`` (``[K, D]``) and the linear probe ``linear_probe`` (1x1 conv
``D -> n``). Its inference is: backbone, head, code upsampled bilinearly, cosine to the
normalised cluster centres, argmax; exactly what a uwstego model computes
(uwstego.training.inference)
and exports. The backbone's weights and names map one to one onto :class:`DinoViT`; the head's
onto :class:`SegmentationHead` (``lin`` = cluster1, ``nl`` = cluster2).

``probe="linear"`` labels with the linear probe instead: ``argmax_k (W_k . z + b_k)``. It is
folded into the nearest-centroid form without changing one label: the code gets two extra
channels, a constant 1 and a constant 0, and centroid ``k`` becomes ``[W_k, b_k, s_k] / R``
with ``R`` the largest ``|[W_k, b_k]|`` and ``s_k`` filling the row to length ``R`` in the zero
channel. Then ``<z', m_k> = (W_k . z + b_k) / R`` for every ``k``; a per-pixel positive scale
(the cosine's normalisation) and bilinear upsampling (its weights sum to one, so the constant
channel stays 1) keep the argmax.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from uwstego.bundle import sha256_file
from uwstego.classes import ClassInfo, default_classes, default_colors, load_classes_yaml
from uwstego.enhance import EnhanceSettings
from uwstego.settings_io import read_bounded
from uwstego.training.artifact import TrainedModel
from uwstego.training.backbones import DinoViT, backbone_config, matching_backbones
from uwstego.training.head import HeadConfig, SegmentationHead
from uwstego.training.stego_datasets import DATASET_CLASSES, DEFAULT_RESOLUTION, PROBES
from uwstego.training.stego_import_read import (
    LightningCheckpoint,
    StegoCheckpointError,
    read_lightning_checkpoint,
)
from uwstego.training.trust import STEGO_IMPORT_SOURCE

log = logging.getLogger(__name__)

BACKBONE_PREFIX = "net.model."
def _tensor(state: Mapping[str, torch.Tensor], key: str, shape: Sequence[int | None],
            path: Path) -> torch.Tensor:
    """``state[key]`` with the expected shape (``None``: any size), else a refusal naming it."""
    if key not in state:
        raise StegoCheckpointError(f"{path}: key {key!r} is missing; not a STEGO checkpoint of "
                                   "the official layout")
    t = state[key]
    if t.ndim != len(shape) or any(s is not None and s != d
                                   for s, d in zip(shape, t.shape, strict=True)):
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise StegoCheckpointError(f"{path}: key {key!r} has shape {tuple(t.shape)}, expected "
                                   f"{want}")
    return t.detach().float().clone()


def identify_backbone(state: Mapping[str, torch.Tensor], path: Path) -> str:
    """The registered DINO backbone whose architecture the ``net.model.*`` tensors show."""
    proj = _tensor(state, BACKBONE_PREFIX + "patch_embed.proj.weight", (None, 3, None, None),
                   path)
    embed, patch = int(proj.shape[0]), int(proj.shape[-1])
    depth = 1 + max((int(m.group(1)) for k in state
                     if (m := re.match(re.escape(BACKBONE_PREFIX) + r"blocks\.(\d+)\.", k))),
                    default=-1)
    names = [n for n in matching_backbones(embed, patch, depth, 0)
             if backbone_config(n).family == "dino"]
    if not names:
        raise StegoCheckpointError(f"{path}: the backbone (embed dim {embed}, patch {patch}, "
                                   f"{depth} blocks) is none of DINO ViT-S/8, S/16, B/8, B/16")
    return names[0]


def _backbone_state(state: Mapping[str, torch.Tensor], name: str,
                    path: Path) -> dict[str, torch.Tensor]:
    expected = DinoViT(backbone_config(name), name=name).state_dict()
    out = {}
    for key, ref in expected.items():
        out[key] = _tensor(state, BACKBONE_PREFIX + key, tuple(ref.shape), path).to(ref.dtype)
    extra = sorted(k for k in state if k.startswith(BACKBONE_PREFIX)
                   and k[len(BACKBONE_PREFIX):] not in expected)
    if extra:
        raise StegoCheckpointError(f"{path}: unexpected backbone keys {extra[:5]} for {name}")
    return out


def _head_state(state: Mapping[str, torch.Tensor], in_dim: int,
                path: Path) -> tuple[HeadConfig, dict[str, torch.Tensor]]:
    w1 = _tensor(state, "net.cluster1.0.weight", (None, in_dim, 1, 1), path)
    dim = int(w1.shape[0])
    head = {"lin.weight": w1, "lin.bias": _tensor(state, "net.cluster1.0.bias", (dim,), path)}
    if any(k.startswith("net.cluster2.") for k in state):
        head.update({
            "nl.0.weight": _tensor(state, "net.cluster2.0.weight", (in_dim, in_dim, 1, 1), path),
            "nl.0.bias": _tensor(state, "net.cluster2.0.bias", (in_dim,), path),
            "nl.2.weight": _tensor(state, "net.cluster2.2.weight", (dim, in_dim, 1, 1), path),
            "nl.2.bias": _tensor(state, "net.cluster2.2.bias", (dim,), path)})
    else:  # projection_type "linear": a zero nonlinear branch adds nothing
        log.info("%s: linear head (no net.cluster2); its nonlinear branch is set to zero", path)
        head.update({"nl.0.weight": torch.zeros(in_dim, in_dim, 1, 1),
                     "nl.0.bias": torch.zeros(in_dim),
                     "nl.2.weight": torch.zeros(dim, in_dim, 1, 1),
                     "nl.2.bias": torch.zeros(dim)})
    config = HeadConfig(in_dim=in_dim, code_dim=dim)
    SegmentationHead(config).load_state_dict(head)  # the project's head takes them as they are
    return config, head


def fold_linear_probe(head: dict[str, torch.Tensor], weight: torch.Tensor, bias: torch.Tensor
                      ) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Head with a constant-1 and a constant-0 code channel, and unit centroids whose cosine
    argmax is the linear probe's argmax (see the module text)."""
    w = torch.cat([weight.flatten(1), bias[:, None]], dim=1).double()  # [n, D + 1]
    norms = w.norm(dim=1)
    radius = float(norms.max())
    if radius == 0.0:
        raise StegoCheckpointError("the linear probe is all zeros")
    fill = (radius ** 2 - norms ** 2).clamp_min(0).sqrt()
    centroids = (torch.cat([w, fill[:, None]], dim=1) / radius).float().numpy()
    folded = dict(head)
    extra_w = torch.zeros(2, *head["lin.weight"].shape[1:])
    folded["lin.weight"] = torch.cat([head["lin.weight"], extra_w])
    folded["lin.bias"] = torch.cat([head["lin.bias"], torch.tensor([1.0, 0.0])])
    folded["nl.2.weight"] = torch.cat([head["nl.2.weight"], extra_w])
    folded["nl.2.bias"] = torch.cat([head["nl.2.bias"], torch.zeros(2)])
    return folded, centroids


def named(names: Sequence[str]) -> tuple[ClassInfo, ...]:
    """Classes of these names in the project's default colours."""
    return tuple(ClassInfo(n, c) for n, c in zip(names, default_colors(len(names)), strict=True))


def read_names(path: str | Path, count: int) -> tuple[ClassInfo, ...]:
    """Class names from a ``classes.yaml`` (names and colours) or a text file, one per line."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_classes_yaml(path, count)
    try:
        text = read_bounded(path, "names file").decode("utf-8")
    except OSError as exc:
        raise ValueError(f"names file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"names file {path}: not UTF-8 text ({exc.reason})") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != count:
        raise ValueError(f"names file {path}: {len(names)} names for {count} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"names file {path}: duplicate names")
    return named(names)


def dataset_of(ckpt: LightningCheckpoint, count: int, dataset: str | None) -> str | None:
    """The dataset whose names fit ``count`` classes: given, from the hyper-parameters, or the
    only one of that size."""
    if dataset is None:
        recorded = ckpt.find("dataset_name")
        if isinstance(recorded, str):
            dataset = "cityscapes" if recorded.startswith("cityscapes") else recorded
    if dataset is None:
        sized = [d for d, names in DATASET_CLASSES.items() if len(names) == count]
        if len(sized) > 1:
            log.warning("%d classes fit %s: name the dataset (--dataset) to get its class "
                        "names; using class_i", count, " and ".join(sized))
        return sized[0] if len(sized) == 1 else None
    if dataset not in DATASET_CLASSES:
        raise ValueError(f"dataset {dataset!r}: known are {sorted(DATASET_CLASSES)}")
    if len(DATASET_CLASSES[dataset]) != count:
        raise StegoCheckpointError(f"{ckpt.path}: its linear probe has {count} classes, "
                                   f"{dataset} has {len(DATASET_CLASSES[dataset])}")
    return dataset


def convert_stego_checkpoint(path: str | Path, probe: str = "cluster",
                             names: str | Path | None = None, dataset: str | None = None,
                             resolution: int = DEFAULT_RESOLUTION) -> TrainedModel:
    """The model of an official STEGO checkpoint; ``probe``: ``cluster`` (the unsupervised
    result, classes ``cluster_i``) or ``linear`` (the supervised probe, dataset names)."""
    if probe not in PROBES:
        raise ValueError(f"probe {probe!r}: expected one of {PROBES}")
    ckpt = read_lightning_checkpoint(path)
    path, state = ckpt.path, ckpt.state_dict
    feat_type = ckpt.find("dino_feat_type")
    if feat_type not in (None, "feat"):
        raise StegoCheckpointError(f"{path}: trained on DINO {feat_type!r} features; only "
                                   "'feat' (the last block's tokens) is what the backbone gives")
    if feat_type is None:
        log.warning("%s: hyper-parameters do not say which features it used; assuming the "
                    "last block's tokens ('feat', as in the released checkpoints)", path)
    backbone = identify_backbone(state, path)
    backbone_state = _backbone_state(state, backbone, path)
    in_dim = backbone_config(backbone).embed_dim
    config, head = _head_state(state, in_dim, path)
    found = {"backbone": backbone, "code_dim": config.code_dim}
    if probe == "cluster":
        centres = _tensor(state, "cluster_probe.clusters", (None, config.code_dim), path)
        centroids = torch.nn.functional.normalize(centres.double(), dim=1).float().numpy()
        count = len(centroids)
        classes = read_names(names, count) if names else default_classes(count)
    else:
        weight = _tensor(state, "linear_probe.weight", (None, config.code_dim, 1, 1), path)
        count = int(weight.shape[0])
        bias = _tensor(state, "linear_probe.bias", (count,), path)
        head, centroids = fold_linear_probe(head, weight, bias)
        config = HeadConfig(in_dim=in_dim, code_dim=config.code_dim + 2)
        name_set = None if names else dataset_of(ckpt, count, dataset)
        found["dataset"] = name_set
        if names:
            classes = read_names(names, count)
        elif name_set:
            classes = named(DATASET_CLASSES[name_set])
        else:
            classes = named([f"class_{i}" for i in range(count)])
    log.info("%s: %s, code dim %d, %s probe with %d classes", path, backbone,
             found["code_dim"], probe, count)
    provenance = {"source": STEGO_IMPORT_SOURCE, "checkpoint": str(path.resolve()),
                  "checkpoint_sha256": sha256_file(path), "probe": probe, **found,
                  "hyper_parameters": ckpt.hyper_parameters}
    return TrainedModel(backbone=backbone, backbone_state=backbone_state, head_config=config,
                        head_state=head, centroids=centroids, classes=classes,
                        enhancement=EnhanceSettings.raw(), resolution=resolution,
                        provenance=provenance)
