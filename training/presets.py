"""Published STEGO loss hyper-parameters (docs/stego.md §4.5): weights and shifts per term.

Torch-free, so that the command line can list the presets without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class LossPreset:
    """One published set of weights (lambda) and shifts (b) for the self, KNN and random terms."""

    name: str
    self_weight: float
    knn_weight: float
    rand_weight: float
    self_shift: float
    knn_shift: float
    rand_shift: float
    description: str = ""

    @property
    def weights(self) -> tuple[float, float, float]:
        return (self.self_weight, self.knn_weight, self.rand_weight)

    @property
    def shifts(self) -> tuple[float, float, float]:
        return (self.self_shift, self.knn_shift, self.rand_shift)

    def to_dict(self) -> dict[str, float | str]:
        return dataclasses.asdict(self)


def _preset(name: str, weights: tuple[float, float, float], shifts: tuple[float, float, float],
            description: str) -> LossPreset:
    return LossPreset(name, *weights, *shifts, description=description)


# docs/stego.md §4.5: blocks of the official src/configs/train_config.yml (and DepthG's retune).
PRESETS: dict[str, LossPreset] = {p.name: p for p in (
    _preset("cocostuff27_vits", (0.67, 0.25, 0.63), (0.08, 0.02, 0.66),
            "Cocostuff27 vit small 1/31/22 (ViT-S/8); project default"),
    _preset("cocostuff27_vitb", (0.1, 1.0, 0.1538476), (0.12, 0.2, 1.0),
            "Cocostuff27 10/3 vit_base (ViT-B/8); the released COCO ViT-B set"),
    _preset("cityscapes_vitb", (1.0, 0.5774535, 0.9058763), (0.4582847, 0.1754347, 0.3136124),
            "Cityscapes 10/3 (ViT-B/8)"),
    _preset("potsdam_vits", (0.67, 0.25, 0.63), (0.08, 0.02, 0.46),
            "Potsdam vit small 1/31/22 (ViT-S/8)"),
    _preset("iaroa_vits", (0.67, 0.25, 0.63), (0.18, 0.12, 0.46),
            "IAROA vit small 1/31/22: the block active in the official file, not the COCO set"),
    _preset("cocostuff27_vits_depthg", (0.58, 0.36, 0.70), (0.07, 0.025, 0.761),
            "DepthG's retune of COCO ViT-S/8 (batch 32): a second candidate when tuning"),
)}
DEFAULT_PRESET = "cocostuff27_vits"


def get_preset(name: str) -> LossPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown loss preset {name!r}; known: {sorted(PRESETS)}") from None
