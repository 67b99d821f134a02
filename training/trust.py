"""The trust facts (edge/trust.py) of a trained model: recorded by training, derived for older
models and imported STEGO checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from uwstego.training.backbones.registry import OFFICIAL_WEIGHTS
from uwstego.trust import OFFICIAL, RANDOM, SELF_PRETRAINED, TRUST_KEY, UNKNOWN, ModelTrust

# training/stego_import.py's provenance "source" of an imported official checkpoint.
STEGO_IMPORT_SOURCE = "official STEGO checkpoint"


def weights_origin(backbone: str, weights: str | Path | None) -> str:
    """``random`` without a file; ``official`` for the published file of ``backbone`` (by its
    name: the file is downloaded under it); else ``self-pretrained``."""
    if weights is None:
        return RANDOM
    url = OFFICIAL_WEIGHTS.get(backbone)
    return OFFICIAL if url and PurePath(url).name == Path(weights).name else SELF_PRETRAINED


def describe_data(sources: Sequence[Mapping[str, Any]], items: int) -> str:
    """``"96 crops from images /data/dive1, bag /data/dive2"``."""
    where = ", ".join(f"{s.get('kind', '?')} {s.get('path', '?')}" for s in sources)
    return f"{items} crops from {where or 'unknown sources'}"


def model_trust(provenance: Mapping[str, Any], backbone: str, clusters: int) -> ModelTrust:
    """The facts training recorded in ``provenance``, or what older provenance still tells."""
    if TRUST_KEY in provenance:
        return ModelTrust.from_dict(provenance[TRUST_KEY])
    if provenance.get("source") == STEGO_IMPORT_SOURCE:
        return ModelTrust(OFFICIAL, backbone, "STEGO's own training set (imported checkpoint)",
                          None, clusters)
    if "random_weights" in provenance:
        weights = weights_origin(backbone, None if provenance["random_weights"]
                                 else provenance.get("weights_file"))
    else:
        weights = UNKNOWN
    steps = provenance.get("train_settings", {}).get("steps")
    data = describe_data(provenance.get("sources", []), int(provenance.get("images", 0)))
    return ModelTrust(weights, backbone, data, steps, clusters)
