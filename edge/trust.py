"""What a model can be trusted for: where its backbone weights came from, what it learnt on.

Training writes these facts into the model's provenance and the export copies them into the
bundle's (``bundle.json`` ``provenance[TRUST_KEY]``, the model's name under
``provenance[NAME_KEY]``), so every reader (export summary, replay report, gallery, node
diagnostics) shows the same facts. A model whose backbone is randomly initialised segments by
colour noise: every reader must say so loudly (docs/stego.md §2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uwstego.settings_io import from_dict_strict

TRUST_KEY = "trust"
NAME_KEY = "name"

OFFICIAL = "official"  # the published self-supervised checkpoint of the backbone
SELF_PRETRAINED = "self-pretrained"  # a weights file that is not the published one
RANDOM = "random"  # randomly initialised: smoke runs only
UNKNOWN = "unknown"  # a model from before these facts were recorded
WEIGHT_ORIGINS = (OFFICIAL, SELF_PRETRAINED, RANDOM, UNKNOWN)


@dataclass(frozen=True)
class ModelTrust:
    """The trust facts of one model: weights origin, backbone, training data, steps, clusters."""

    weights: str
    backbone: str
    data: str
    steps: int | None
    clusters: int

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_ORIGINS:
            raise ValueError(f"weights origin {self.weights!r}: expected one of "
                             f"{WEIGHT_ORIGINS}")

    @property
    def random(self) -> bool:
        return self.weights == RANDOM

    def describe(self) -> str:
        """One line: ``weights official, backbone dino_vits8, data ..., 5000 steps, 8 clusters``."""
        steps = "steps unknown" if self.steps is None else f"{self.steps} steps"
        return (f"weights {self.weights}, backbone {self.backbone}, data {self.data}, {steps}, "
                f"{self.clusters} clusters")

    def warning(self) -> str | None:
        """The line every reader shows for a random-weights model; None otherwise."""
        if not self.random:
            return None
        return (f"the {self.backbone} backbone of this model has RANDOM weights: its classes "
                "mean nothing; use it for smoke runs only, never on a vehicle")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelTrust:
        return from_dict_strict(cls, data, "trust facts")


def read_trust(provenance: Mapping[str, Any]) -> ModelTrust | None:
    """The trust facts of a bundle's (or model's) provenance; None where it has none."""
    data = provenance.get(TRUST_KEY)
    return None if data is None else ModelTrust.from_dict(data)
