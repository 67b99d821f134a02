"""The unfused eager PyTorch path the fused graph is checked against (docs/stego.md §8, no CRF).

Per frame: the numpy graph-stage enhancement of :mod:`uwstego.enhance` (what training applies), the
resize to the network size, ImageNet normalisation, the backbone with its positional embedding
interpolated on the fly, the head, bilinear upsampling of the **D-channel code** to camera size,
cosine similarity to the centroids and argmax. Used by the export's parity check and by the
benchmark as the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uwstego.enhance import apply_params
from uwstego.image_size import Size
from uwstego.training.backbones import IMAGENET_MEAN, IMAGENET_STD, DinoViT
from uwstego.training.clusters import cosine_scores
from uwstego.training.head import SegmentationHead


class ReferenceSegmenter:
    """``segment(image_u8 HxWx3, params[5]) -> (labels uint8 HxW, confidence float32 HxW)``."""

    def __init__(self, backbone: DinoViT, head: SegmentationHead, centroids: np.ndarray,
                 network: Size, cluster_classes: Sequence[int] = ()) -> None:
        self.backbone = backbone.eval()
        self.head = head.eval()
        self.centroids = torch.as_tensor(np.asarray(centroids, dtype=np.float32))
        self.network = network
        # Class of each cluster (clusters merged by name, edge/classes.py); identity if empty.
        self.class_of_cluster = torch.tensor(tuple(cluster_classes)
                                             or range(self.centroids.shape[0]))
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)

    @torch.inference_mode()
    def segment(self, image_u8: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        camera = Size.of(image_u8)
        img = apply_params(image_u8.astype(np.float32) / 255.0, params)
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        if camera != self.network:
            x = F.interpolate(x, size=self.network.shape,
                              mode="bilinear", align_corners=False, antialias=False)
        x = (x - self._mean) / self._std
        code = self.head(self.backbone(x))
        code = F.interpolate(code, size=camera.shape, mode="bilinear", align_corners=False)
        confidence, labels = cosine_scores(code, self.centroids).max(dim=1)
        labels = self.class_of_cluster[labels[0]]
        return labels.to(torch.uint8).numpy(), confidence[0].numpy()
