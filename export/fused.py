"""The deploy graph as one torch module: a uint8 camera frame in, class labels and confidence out.

Everything has the static shapes of one camera size and one network size, in this order:

1. ``uint8 -> float32`` first (TensorRT 8.6 converts uint8 network inputs only to float), then
   NHWC -> NCHW and ``/ 255``;
2. the graph stage of the enhancement, op for op as :func:`uwstego.enhance.apply_params`, at camera
   resolution: it is nonlinear (compensation, clipping) so it does not commute with the resize;
3. bilinear resize to the network size (``align_corners=False``, no antialiasing);
4. ImageNet normalisation as one per-channel affine ``x * (1/std) + (-mean/std)``;
5. the ViT with its positional embedding interpolated once for this grid and stored as a buffer
   (docs/stego.md §9.3: no bicubic Resize reaches the graph);
6. the head in eval mode (dropout is the identity);
7. nearest centroid as a bias-free 1x1 convolution with unit centroids (docs/stego.md §9.1), and
   the code norm ``|z|`` per patch;
8. one bilinear upsampling of the K score maps and the norm map to camera size;
9. ``labels = argmax_k`` cast to uint8 through float32 (TensorRT 8.6 has no int32 -> uint8 cast),
   ``confidence = max_k score / norm``; for models whose clusters were merged by name
   (edge/classes.py), a ``Gather`` of the cluster -> class table turns the argmax into class
   indices;
10. for calibrated models, ``novelty`` (:func:`uwstego.novelty.novelty_map`): the cluster's knots
    gathered by the argmax (``Gather`` on int32 indices) and a clipped sum over the knot
    segments; with ``mark_unknown``, labels whose confidence is below their cluster's threshold
    become :data:`uwstego.contract.UNKNOWN_LABEL` (a ``Where`` before the uint8 cast). Without it
    the
    label ops are the same as in an uncalibrated graph, so the labels are bit-identical.

What is exact and what is approximated, against the official path (upsample the D-channel code
``z``, normalise it, cosine to the centroids; :mod:`uwstego.export.reference`):

- **labels are exact.** Bilinear upsampling is a per-pixel convex combination ``z_up = sum w_i
  z_i`` and commutes with the 1x1 convolution, so the upsampled scores are ``<z_up, c_k>`` and
  dividing by ``|z_up| > 0`` keeps the argmax (docs/stego.md §9.2). Only float rounding can
  flip a pixel where two classes tie.
- **confidence is the official cosine shrunk toward 0.** The graph divides the same upsampled
  scores by the upsampled norm ``sum w_i |z_i|`` instead of ``|z_up| = |sum w_i z_i|``, which
  would need the D-channel code at camera size (what the fusion avoids). So the graph's
  confidence is exactly ``rho * cos_official`` with ``rho = |z_up| / sum w_i |z_i|`` in (0, 1]
  (triangle inequality): same sign, never larger in magnitude, equal wherever the neighbouring
  codes point the same way (inside regions, and at every pixel whose interpolation weights fall
  on one patch) and shrunk across boundaries between unlike codes, which then read as less
  familiar: the safe side for flagging unfamiliar things. The export reports the difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uwstego.contract import UNKNOWN_LABEL
from uwstego.image_size import Size
from uwstego.novelty import KNOT_COUNT, NoveltyCalibration, segment_slopes
from uwstego.training.backbones import IMAGENET_MEAN, IMAGENET_STD, DinoViT
from uwstego.training.head import SegmentationHead

# Floor of the per-patch code norm: keeps the confidence finite for an all-zero code and is
# representable in float16 (unlike the 1e-12 of F.normalize).
NORM_FLOOR = 1e-6


def imagenet_affine() -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` as ``[1, 3, 1, 1]`` so that ``x * scale + shift == (x - mean) / std``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return 1.0 / std, -mean / std


def apply_params_torch(x01: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """:func:`uwstego.enhance.apply_params` on ``[1, 3, H, W]`` with ``params [1, 5]``, same op
    order.

    The numpy version skips the compensation when its coefficient is 0; computing it anyway adds
    exactly 0, so both give the same bits.
    """
    r, g, b = x01[:, 0:1], x01[:, 1:2], x01[:, 2:3]
    c_r = params[:, 0:1].reshape(1, 1, 1, 1)
    c_b = params[:, 1:2].reshape(1, 1, 1, 1)
    r = r + c_r * (1.0 - r) * g
    b = b + c_b * (1.0 - b) * g
    out = torch.cat([r, g, b], dim=1) * params[:, 2:5].reshape(1, 3, 1, 1)
    return out.clamp(0.0, 1.0)


def check_network_size(network: Size, patch_size: int) -> None:
    if network.width % patch_size or network.height % patch_size:
        raise ValueError(f"network size {network} is not a multiple of the patch size "
                         f"{patch_size}")


class FusedSegmenter(nn.Module):
    """``forward(image uint8 [1,H,W,3], enhance float32 [1,5]) -> (labels uint8 [1,H,W],
    confidence float32 [1,H,W][, novelty float32 [1,H,W]])`` for one camera size ``H x W``;
    novelty when a ``calibration`` is given."""

    def __init__(self, backbone: DinoViT, head: SegmentationHead, centroids: np.ndarray,
                 camera: Size, network: Size, calibration: NoveltyCalibration | None = None,
                 mark_unknown: bool = False, cluster_classes: Sequence[int] = ()) -> None:
        super().__init__()
        if mark_unknown and calibration is None:
            raise ValueError("marking unknown pixels needs a novelty calibration (the model "
                             "was trained without one)")
        check_network_size(network, backbone.patch_size)
        cent = torch.as_tensor(np.asarray(centroids, dtype=np.float32))
        if cent.ndim != 2 or cent.shape[1] != head.config.code_dim:
            raise ValueError(f"centroids must be [K, {head.config.code_dim}], got "
                             f"{tuple(cent.shape)}")
        self.camera = camera
        self.network = network
        self.num_classes = int(cent.shape[0])
        table = tuple(cluster_classes) or tuple(range(self.num_classes))
        self.num_labels = max(table) + 1  # classes of the labels (and of the calibration)
        self.merged = table != tuple(range(self.num_classes))
        if self.merged:
            self.register_buffer("class_of_cluster", torch.tensor(table, dtype=torch.float32))
        self.backbone = backbone.eval()
        self.head = head.eval()
        grid = (network.height // backbone.patch_size, network.width // backbone.patch_size)
        with torch.no_grad():
            pos = backbone.interpolate_pos_encoding(*grid).detach().clone()
        self.register_buffer("pos_embed", pos)
        unit = F.normalize(cent, dim=1)
        self.register_buffer("centroid_weight", unit[:, :, None, None].contiguous())
        scale, shift = imagenet_affine()
        self.register_buffer("norm_scale", scale)
        self.register_buffer("norm_shift", shift)
        self.calibration = calibration
        self.calibrated = calibration is not None
        self.mark_unknown = mark_unknown
        if calibration is not None:
            if calibration.num_clusters != self.num_labels:
                raise ValueError(f"calibration of {calibration.num_clusters} classes for "
                                 f"{self.num_labels} classes")
            knots = calibration.knot_array()
            self.register_buffer("knot_hi", torch.from_numpy(knots[:, 1:].copy()))
            self.register_buffer("knot_slope", torch.from_numpy(segment_slopes(knots)))
            self.register_buffer("thresholds", torch.from_numpy(calibration.threshold_array()))

    def forward(self, image: torch.Tensor, enhance: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cam, net = self.camera, self.network
        x = image.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        x = apply_params_torch(x, enhance)
        if cam != net:
            x = F.interpolate(x, size=net.shape, mode="bilinear",
                              align_corners=False, antialias=False)
        x = x * self.norm_scale + self.norm_shift
        code = self.head(self.backbone(x, pos_embed=self.pos_embed))
        scores = F.conv2d(code, self.centroid_weight)
        norm = torch.linalg.vector_norm(code, dim=1, keepdim=True).clamp_min(NORM_FLOOR)
        maps = F.interpolate(torch.cat([scores, norm], dim=1), size=cam.shape,
                             mode="bilinear", align_corners=False)
        best, index = maps[:, :self.num_classes].max(dim=1)
        confidence = best / maps[:, self.num_classes]
        label_values = index.to(torch.float32)
        if self.merged:
            label_values = self.class_of_cluster[index.to(torch.int32)]
            index = label_values.to(torch.int32)  # the calibration is per class
        if not self.calibrated:
            return label_values.to(torch.uint8), confidence
        cluster = index.to(torch.int32)
        if self.mark_unknown:
            label_values = torch.where(confidence < self.thresholds[cluster],
                                       torch.full_like(label_values, float(UNKNOWN_LABEL)),
                                       label_values)
        parts = (self.knot_hi[cluster] - confidence[..., None]) * self.knot_slope[cluster]
        novelty = parts.clamp(0.0, 1.0).sum(dim=-1) * (1.0 / (KNOT_COUNT - 1))
        return label_values.to(torch.uint8), confidence, novelty
