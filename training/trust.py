"""The trust facts of a trained model, read from its provenance: what its weights are, what it
was trained on (sources, feature-cache crops) and for how long. A model on random weights
segments, but its clusters mean nothing; every page that shows a model's clusters says which
kind it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.backbones import OFFICIAL_WEIGHTS

RANDOM = "random"
OFFICIAL = "official"
SELF_PRETRAINED = "self-pretrained"
NOT_RECORDED = "not recorded"
_OFFICIAL_FILES = {url.rsplit("/", 1)[-1] for url in OFFICIAL_WEIGHTS.values()}


@dataclass(frozen=True)
class TrustFacts:
    weights: str  # RANDOM, OFFICIAL, SELF_PRETRAINED or NOT_RECORDED
    weights_detail: str  # the weights file, or where the model came from
    backbone: str
    data: str  # the training sources, e.g. "video dive.mp4, images reef/"
    images: int | None  # feature-cache items: crops of the training frames
    steps: int | None
    clusters: int
    classes: int

    @property
    def random(self) -> bool:
        return self.weights == RANDOM

    def rows(self) -> list[tuple[str, str]]:
        def known(value: int | None) -> str:
            return NOT_RECORDED if value is None else str(value)

        weights = self.weights + (f" ({self.weights_detail})" if self.weights_detail else "")
        merged = f" ({self.classes} classes after merging)" if self.classes < self.clusters \
            else ""
        return [("weights", weights), ("backbone", self.backbone),
                ("training data", self.data or NOT_RECORDED),
                ("training crops", known(self.images)), ("training steps", known(self.steps)),
                ("clusters", f"{self.clusters}{merged}")]


def _weights(provenance: Mapping[str, Any]) -> tuple[str, str]:
    if provenance.get("random_weights"):
        return RANDOM, "randomly initialised backbone: the clusters mean nothing"
    file = provenance.get("weights_file")
    if file:
        return (OFFICIAL if Path(file).name in _OFFICIAL_FILES else SELF_PRETRAINED), str(file)
    if provenance.get("source") == "official STEGO checkpoint":
        return OFFICIAL, f"STEGO checkpoint {provenance.get('checkpoint', '')}".strip()
    return NOT_RECORDED, ""


def trust_facts(backbone: str, provenance: Mapping[str, Any], clusters: int,
                classes: int) -> TrustFacts:
    weights, detail = _weights(provenance)
    steps = provenance.get("train_settings", {}).get("steps")
    images = provenance.get("images")
    data = ", ".join(f"{s.get('kind', '?')} {Path(str(s.get('path', '?'))).name}"
                     for s in provenance.get("sources", []))
    return TrustFacts(weights, detail, backbone, data, None if images is None else int(images),
                      None if steps is None else int(steps), clusters, classes)
