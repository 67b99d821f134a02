"""What ``uwstego evaluate`` scores: a trained model (PyTorch) or an exported bundle.

Both predict the labels of the scored square of one still image (docs/stego.md §8): a
``model.pt`` on the enhanced, resized and centre-cropped image; a bundle runs the deployed graph
through :class:`uwstego.segmenter.Segmenter` (ONNX Runtime) on the whole image, as the vehicle
would, and its labels are cropped with the masks' geometry. Labels are class indices of the
model's class table (clusters merged by name count as one class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from uwstego.bundle import BUNDLE_FILE, Bundle, load_bundle
from uwstego.classes import ClassInfo
from uwstego.enhance import Enhancer
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import TrainedModel, load_trained_model
from uwstego.training.inference import segment, to_network_input
from uwstego.training.settings import EvalSettings

CV2_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "area": cv2.INTER_AREA,
                     "bilinear": cv2.INTER_LINEAR}
# The deployed graph runs on the CPU provider: scores do not depend on the machine.
BUNDLE_BACKEND = "onnxruntime"


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


class Predictor(Protocol):
    kind: str  # "model" or "bundle", for the report
    classes: tuple[ClassInfo, ...]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Class indices of the scored ``resolution`` square of an RGB still image."""


class ModelPredictor:
    """The PyTorch path of docs/stego.md §8 (optionally flip-averaged)."""

    kind = "model"

    def __init__(self, model: TrainedModel, settings: EvalSettings,
                 device: str | torch.device = "cpu") -> None:
        self.model, self.settings, self.device = model, settings, device
        self.backbone, self.head = model.build_modules(device)
        if settings.resolution % self.backbone.patch_size:
            raise ValueError(f"evaluation resolution {settings.resolution} is not a multiple of "
                             f"the patch size {self.backbone.patch_size}")
        self.classes = model.classes
        self.class_of_cluster = np.asarray(model.cluster_classes, dtype=np.uint8)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        s = self.settings
        img = resize_center_crop(Enhancer(self.model.enhancement).apply(rgb), s.resolution,
                                 s.interpolation)
        labels, _ = segment(self.backbone, self.head, self.model.centroids,
                            to_network_input([img], self.device), flip=s.flip)
        return self.class_of_cluster[labels[0].cpu().numpy()]


class BundlePredictor:
    """The deployed graph of a bundle, a fresh enhancement state per still image."""

    kind = "bundle"

    def __init__(self, bundle: Bundle, settings: EvalSettings) -> None:
        if settings.flip:
            raise ValueError(f"--flip averages a model.pt's code with the mirrored image; the "
                             f"bundle {bundle.path} runs its graph as deployed: evaluate it "
                             "without --flip")
        self.settings = settings
        self.segmenter = Segmenter(bundle, backend=BUNDLE_BACKEND)
        self.classes = bundle.meta.classes

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        self.segmenter.reset()
        labels = self.segmenter.segment(rgb).labels
        return resize_center_crop(labels, self.settings.resolution, "nearest")


def open_predictor(model: TrainedModel | Bundle | str | Path, settings: EvalSettings,
                   device: str | torch.device = "cpu") -> ModelPredictor | BundlePredictor:
    """A predictor for a model, a bundle, or a path to either (a bundle folder holds
    ``bundle.json``; anything else is read as a model file or training output folder)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir() and not (path / BUNDLE_FILE).is_file() \
                and not (path / "model.pt").is_file():
            raise FileNotFoundError(f"{path} holds neither {BUNDLE_FILE} (an exported bundle) "
                                    "nor model.pt (a training run): pass one of them")
        model = load_bundle(path) if (path / BUNDLE_FILE).is_file() else load_trained_model(path)
    if isinstance(model, Bundle):
        return BundlePredictor(model, settings)
    return ModelPredictor(model, settings, device)
