"""Tiny trained models exported through the real pipeline (needs torch: the workstation side).

``export_tiny_bundle`` runs the real export pipeline (fused graph, ONNX checks, ONNX Runtime vs
PyTorch parity, atomic bundle write) on a tiny random ViT, so the bundles are exactly what
``export-trt`` writes; it takes about a second on one core. Tests reach it through
``tests.support.bundles``, which also serves torch-free interpreters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from tests.support.bundles import BundleSpec
from uwstego.classes import default_classes
from uwstego.enhance import EnhanceSettings
from uwstego.export.fused import imagenet_affine
from uwstego.export.pipeline import default_network_size, export_bundle
from uwstego.export.settings import ExportSettings
from uwstego.image_size import Size
from uwstego.sample_frames import synthetic_frames
from uwstego.training.artifact import TrainedModel, save_trained_model
from uwstego.training.backbones import backbone_config, build_backbone, save_random_checkpoint
from uwstego.training.calibration import calibrate
from uwstego.training.head import HeadConfig, SegmentationHead


def make_tiny_model(seed: int = 0, k: int = 5, backbone: str = "tiny_vit8",
                    enhancement: EnhanceSettings | None = None,
                    calibrated: bool = False) -> TrainedModel:
    """Random tiny ViT (written and read back through the official-checkpoint loader), random
    head, and ``k`` unit centroids taken from the model's own codes on a synthetic frame, so
    that every class occurs in its output; ``calibrated``: novelty calibrated on those codes."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_random_checkpoint(backbone, Path(tmp) / "backbone.pth", seed=seed)
        vit = build_backbone(backbone, weights=weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = SegmentationHead(HeadConfig(in_dim=vit.embed_dim)).eval()
    side = vit.config.pretrain_size
    frame = synthetic_frames(Size(side, side), 1, seed)[0].astype(np.float32) / 255.0
    scale, shift = imagenet_affine()
    x = torch.from_numpy(frame).permute(2, 0, 1)[None] * scale + shift
    with torch.inference_mode():
        codes = head(vit(x))[0].flatten(1).T.numpy()
    rows = np.random.default_rng(seed).choice(len(codes), size=k, replace=False)
    centroids = codes[rows] / np.linalg.norm(codes[rows], axis=1, keepdims=True)
    return TrainedModel(backbone=backbone, backbone_state=vit.state_dict(),
                        head_config=head.config, head_state=head.state_dict(),
                        centroids=centroids.astype(np.float32), classes=default_classes(k),
                        enhancement=enhancement or EnhanceSettings(), resolution=side,
                        provenance={"source": "tests.support.tiny_export.make_tiny_model",
                                    "seed": seed},
                        calibration=calibrate(codes, centroids) if calibrated else None)


def export_tiny_bundle(spec: BundleSpec, out_dir: Path) -> Path:
    """Export the tiny model of ``spec`` to a bundle at ``out_dir``; the engine step is skipped
    (TensorRT tests build it themselves). Only the plain graphs: ONNX Runtime's pick among CPU
    graphs is a timing, and tests compare Segmenters bit for bit (tests/test_cpu_graphs.py
    covers the CPU graphs)."""
    model = make_tiny_model(seed=spec.seed, k=spec.k, backbone=spec.backbone,
                            enhancement=spec.enhancement, calibrated=spec.novelty)
    cam = Size(*spec.camera)
    if spec.network is None:
        net = default_network_size(cam, min(spec.camera),
                                   backbone_config(spec.backbone).patch_size)
    else:
        net = Size(*spec.network)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_trained_model(Path(tmp) / "model.pt", model)
        export_bundle(checkpoint, out_dir, ExportSettings(camera=cam, network=net, frames=2,
                                                          seed=spec.seed, engine="skip",
                                                          unknown_label=spec.unknown,
                                                          name=out_dir.name,
                                                          cpu_graphs=False))
    return out_dir
