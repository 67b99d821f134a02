"""The models of a replay: one bundle under test first, zero or more compared with it after.

Each model keeps what was measured about it (figures, its label pairs with the ground truth
and, for compared models, with the first model) and turns that into its part of the summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.bundle import Bundle, BundleMeta, load_bundle
from uwstego.contract import stretches
from uwstego.image_size import Size
from uwstego.replay.metrics import PairCounts, StreamFigures, scored
from uwstego.replay.settings import ReplaySettings
from uwstego.replay.source import BagGroundTruth, DirGroundTruth
from uwstego.replay.summary import PRIMARY_ROLE, BundleDoc, ModelDoc, TruthDoc, compare_role
from uwstego.segmenter import Segmenter
from uwstego.visualize import palette

RANDOM_WEIGHTS = "random"


@dataclass
class ReplayModel:
    """One bundle in the replay and everything measured about it."""

    role: str
    bundle: Bundle
    segmenter: Segmenter
    figures: StreamFigures
    lut: np.ndarray  # class colours for overlays
    truth_pairs: PairCounts = field(default_factory=PairCounts)
    truth_positions: list[int] = field(default_factory=list)  # processed frames with truth
    agreement: PairCounts = field(default_factory=PairCounts)  # with the first model

    @property
    def class_names(self) -> list[str]:
        return self.figures.class_names

    def warm_up(self) -> None:
        """One frame before timing starts: first runs allocate (and TensorRT may tune)."""
        self.segmenter.segment(np.zeros((*self.segmenter.camera_size.shape, 3), np.uint8))
        self.segmenter.reset()

    def describe(self) -> BundleDoc:
        meta = self.bundle.meta
        return BundleDoc(path=str(self.bundle.path), model_sha256=self.bundle.model_sha256,
                         classes=tuple(c.name for c in meta.classes),
                         class_colors=tuple(tuple(c.color) for c in meta.classes),
                         backend=self.segmenter.describe(),
                         name=str(meta.provenance.get("name") or Path(self.bundle.path).name),
                         provenance=dict(meta.provenance), trust=trust_facts(meta))

    def stretch_warning(self, size: Size, name: str) -> str | None:
        """What to say when frames of ``size`` are stretched to this model's camera size (another
        aspect ratio), as the node's diagnostics say ERROR for them; None if they are not."""
        camera = self.segmenter.camera_size
        if size == camera or not stretches(size, camera):
            return None
        return (f"frames of {size} are stretched to {name}'s camera size {camera} (another "
                "aspect ratio): the model sees a distorted scene and the node reports ERROR "
                "for such frames; export the bundle for this camera")

    def document(self, primary: ReplayModel, truth: TruthDoc | None,
                 gt_names: Sequence[str] | None, frames: int) -> ModelDoc:
        """This model's part of the summary. ``truth``: the run's ground-truth facts (this
        model's scores are added to them), ``frames``: the number of frames processed."""
        agreement = None
        if self is not primary and len(self.agreement):
            overall, per_frame = self.agreement.scores(len(self.class_names),
                                                       len(primary.class_names))
            agreement = scored(overall, per_frame, primary.class_names)
        return ModelDoc(role=self.role, bundle=self.describe(), figures=self.figures.summary(),
                        series=self.figures.series(),
                        ground_truth=None if truth is None
                        else self._scored_truth(truth, gt_names, frames),
                        agreement=agreement)

    def _scored_truth(self, truth: TruthDoc, gt_names: Sequence[str] | None,
                      frames: int) -> TruthDoc:
        pairs = self.truth_pairs
        n_truth = truth.n_classes or pairs.truth_classes()
        mine = replace(truth, frames_scored=len(pairs), n_classes=None)
        if not len(pairs) or not n_truth:
            return mine
        names = list(gt_names) if gt_names else [f"class_{i}" for i in range(n_truth)]
        overall, per_frame = pairs.scores(len(self.class_names), n_truth)
        scores = replace(scored(overall, per_frame, names, self.truth_positions, frames),
                         confusion=pairs.confusion(len(self.class_names), n_truth))
        return replace(mine, n_classes=n_truth,
                       extra_clusters=max(0, len(self.class_names) - n_truth), scores=scores)


def trust_facts(meta: BundleMeta) -> dict[str, Any]:
    """The facts that say how far a model's figures can be trusted, from its provenance:
    the training weights (``random`` for a randomly initialised backbone), backbone, steps,
    clusters and training images."""
    training = meta.provenance.get("training")
    training = training if isinstance(training, Mapping) else {}
    steps = training.get("train_settings", {}).get("steps") \
        if isinstance(training.get("train_settings"), Mapping) else None
    if training.get("random_weights") is True:
        weights = RANDOM_WEIGHTS
    elif training.get("weights_file"):
        weights = f"file {training['weights_file']}"
    else:
        weights = "unknown (the bundle records no training weights)"
    return {"weights": weights, "backbone": meta.backbone, "training steps": steps,
            "clusters": len(meta.classes), "training images": training.get("images")}


def random_weights_warning(bundle: BundleDoc, name: str) -> str | None:
    """The report's banner for a model trained on a randomly initialised backbone."""
    if bundle.trust.get("weights") != RANDOM_WEIGHTS:
        return None
    return (f"{name} was trained on a randomly initialised backbone (random weights): its "
            "features mean nothing and neither do its figures; for smoke runs only, never on "
            "a vehicle")


def load_models(bundles: Sequence[str | Path | Bundle], settings: ReplaySettings
                ) -> list[ReplayModel]:
    """The first bundle is the one under test, the others are compared with it."""
    models = []
    for position, b in enumerate(bundles):
        loaded = b if isinstance(b, Bundle) else load_bundle(b, trusted_keys=settings.trusted_keys)
        seg = Segmenter(loaded, backend=settings.backend, precision=settings.precision,
                        threads=settings.threads, cpu_graph=settings.cpu_graph)
        model = ReplayModel(PRIMARY_ROLE if position == 0 else compare_role(position), loaded,
                            seg, StreamFigures([c.name for c in loaded.meta.classes]),
                            palette(loaded.meta.classes))
        models.append(model)
    return models


def truth_facts(truth: BagGroundTruth | DirGroundTruth, settings: ReplaySettings,
                frames_without_truth: int) -> TruthDoc:
    """What the ground truth itself was like, before any model is scored against it."""
    unreadable: dict[str, int] | tuple[str, ...] | None = None
    if isinstance(truth, BagGroundTruth) and truth.stats.skipped:
        unreadable = dict(truth.stats.reasons)
    elif isinstance(truth, DirGroundTruth) and truth.unreadable:
        unreadable = tuple(truth.unreadable)
    names = settings.gt_names
    return TruthDoc(source=settings.gt_topic or str(settings.gt_dir), frames_scored=0,
                    frames_without_truth=frames_without_truth, unreadable=unreadable,
                    n_classes=settings.gt_classes or (len(names) if names else None))
