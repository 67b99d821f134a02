"""Training the STEGO head from cached backbone features (docs/stego.md §7).

One step: zero both optimisers; run the head in train mode on the anchor batch and its KNN-positive
batch; correlate the dropped-out features (a third dropout mask) with the codes; train the cluster
probe on the detached anchor code; one backward; step both optimisers.

Under ``torch.distributed`` (torchrun) every rank takes its own slice of each epoch's shuffled
order, the head and probe are wrapped in DDP together (so both are averaged, as Lightning does for
the official code), and rank 0 writes logs, checkpoints and the final model. The batch size is
per process, as in the official code.

Resuming: the state file (head, probe, both optimisers, step and every rank's RNG states) is
written atomically every ``checkpoint_every`` steps; ``resume=True`` continues from it and
reproduces the uninterrupted run when the number of processes is unchanged.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edge import __version__
from edge.atomic import atomic_path
from edge.classes import ClassInfo, default_classes
from training import distributed as ddp
from training.artifact import TrainedModel, load_trained_model, save_trained_model
from training.backbones import DinoViT
from training.calibration import calibrate_cosines, graph_confidences
from training.clusters import ClusterProbe, spherical_kmeans
from training.csv_log import restart_csv
from training.features import FeatureCache, weights_fingerprint
from training.head import HeadConfig, SegmentationHead
from training.settings import TrainSettings
from training.stego import CorrelationTerms, correlation_loss, get_preset

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
LOG_FILE = "train_log.csv"
TENSORBOARD_DIR = "tensorboard"
STATE_FORMAT = "uwstego.train_state"
LOG_COLUMNS = ("step", "epoch", "loss", "correlation", "self", "knn", "random", "cluster",
               "elapsed_s")
# Settings that may change between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = frozenset({"steps", "log_every", "histogram_every", "checkpoint_every",
                               "kmeans_samples"})


@dataclass(frozen=True)
class TrainResult:
    model: TrainedModel
    model_path: Path
    state_path: Path
    log_path: Path
    steps: int
    probe_centroids: np.ndarray  # the online probe's unit centroids, for comparison


class StegoModule(nn.Module):
    """Head and cluster probe in one module so that one DDP wrapper averages both."""

    def __init__(self, head: SegmentationHead, probe: ClusterProbe) -> None:
        super().__init__()
        self.head = head
        self.probe = probe

    def forward(self, feats: torch.Tensor,
                n_anchor: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(signal, code, probe_loss)``; the probe sees only the detached anchor code."""
        code = self.head(feats)
        signal = self.head.signal(feats)
        probe_loss, _ = self.probe(code[:n_anchor].detach())
        return signal, code, probe_loss


@dataclass
class TrainRun:
    """Everything a step touches (mutable: optimisers and generators advance)."""

    module: StegoModule
    wrapped: nn.Module
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer]
    generator: torch.Generator
    settings: TrainSettings
    device: torch.device

    @property
    def head(self) -> SegmentationHead:
        return self.module.head


def train_step(run: TrainRun, feats: torch.Tensor,
               feats_pos: torch.Tensor) -> tuple[CorrelationTerms, torch.Tensor]:
    """One optimisation step on an anchor batch and its KNN-positive batch."""
    s = run.settings
    preset = get_preset(s.preset)
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    run.wrapped.train()
    n = feats.shape[0]
    # Anchor and positive go through the head as one batch: Dropout2d masks are drawn per
    # sample, so this equals two calls, and DDP sees exactly one forward per backward.
    signal, code, probe_loss = run.wrapped(torch.cat([feats, feats_pos]), n)
    terms = correlation_loss(signal[:n], signal[n:], code[:n], code[n:], None, None, None,
                             preset.shifts, preset.weights, feature_samples=s.feature_samples,
                             neg_samples=s.neg_samples, generator=run.generator)
    (terms.total + probe_loss).backward()
    for opt in run.optimizers:
        opt.step()
    return terms, probe_loss.detach()


class EpochSampler:
    """DistributedSampler's order with drop_last: epoch e is a permutation seeded by seed + e.

    Rank r takes every world-th index of the first ``world * per_rank`` entries, cut into
    batches; incomplete batches are dropped so every step sees ``batch_size`` images.
    """

    def __init__(self, n: int, batch_size: int, seed: int, info: ddp.DistInfo) -> None:
        self.n, self.batch_size, self.seed, self.info = n, batch_size, seed, info
        self.per_rank = n // info.world_size
        self.batches_per_epoch = self.per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"{n} images cannot fill a batch of {batch_size} on each of "
                             f"{info.world_size} process(es): lower --batch-size or add data")
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def epoch_of(self, step: int) -> int:
        return step // self.batches_per_epoch

    def batch(self, step: int) -> np.ndarray:
        """Indices of the batch for 0-based ``step`` on this rank."""
        epoch, b = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=g).numpy()
            w = self.info.world_size
            self._order = perm[self.info.rank:self.per_rank * w:w]
            self._epoch = epoch
        return self._order[b * self.batch_size:(b + 1) * self.batch_size]


def draw_positives(knn: np.ndarray, anchors: np.ndarray, num_neighbors: int,
                   generator: torch.Generator) -> np.ndarray:
    """For each anchor, a neighbour drawn uniformly from ranks 1..num_neighbors (0 is itself)."""
    ranks = torch.randint(1, num_neighbors + 1, (len(anchors),), generator=generator).numpy()
    return knn[anchors, ranks]


def check_knn(knn: np.ndarray | torch.Tensor, n: int, num_neighbors: int) -> np.ndarray:
    knn = knn.cpu().numpy() if isinstance(knn, torch.Tensor) else np.asarray(knn)
    if knn.ndim != 2 or knn.shape[0] != n:
        raise ValueError(f"KNN table has shape {knn.shape}, expected [{n}, k] for {n} images")
    if knn.shape[1] <= num_neighbors:
        raise ValueError(f"KNN table keeps {knn.shape[1]} neighbours (rank 0 = self), but "
                         f"positives are drawn from ranks 1..{num_neighbors}")
    if knn.min() < 0 or knn.max() >= n:
        raise ValueError("KNN table holds indices outside the feature cache")
    return knn.astype(np.int64)


def _rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _rng_state(run: TrainRun) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "generator": run.generator.get_state()}
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def _set_rng_state(run: TrainRun, state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    run.generator.set_state(state["generator"])
    if "cuda" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], run.device)


def save_state(path: Path, run: TrainRun, step: int, rng_states: Sequence[dict]) -> None:
    """Atomic training-state checkpoint (rank 0 calls it with every rank's RNG state)."""
    state = {
        "format": STATE_FORMAT,
        "step": step,
        "settings": run.settings.to_dict(),
        "head_config": run.head.config.to_dict(),
        "world_size": len(rng_states),
        "module": run.module.state_dict(),
        "optimizers": [opt.state_dict() for opt in run.optimizers],
        "rng": list(rng_states),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, settings: TrainSettings) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} does not exist (no checkpoint was "
                                "written yet); start without --resume")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a uwstego training state")
    saved = state["settings"]
    now = settings.to_dict()
    changed = sorted(k for k in now if saved.get(k) != now[k] and k not in RESUMABLE_CHANGES)
    if changed:
        raise ValueError(f"cannot resume {path}: settings changed since it was written: "
                         + ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in changed))
    return state


class _Logs:
    """Rank 0's CSV of every loss term and its TensorBoard scalars and cd histograms."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / LOG_FILE
        if not enabled:
            return
        restart_csv(self.path, LOG_COLUMNS, start_step)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR),
                                    purge_step=start_step + 1 if start_step else None)

    def row(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._csv.writerow([step] + [f"{values[c]:.6g}" for c in LOG_COLUMNS[1:]])
        self._file.flush()
        for name in LOG_COLUMNS[2:-1]:
            self.writer.add_scalar(f"loss/{name}", values[name], step)

    def histograms(self, step: int, terms: CorrelationTerms) -> None:
        if not self.enabled:
            return
        for name, cd in (("self", terms.self_cd), ("knn", terms.knn_cd),
                         ("random", terms.random_cd)):
            self.writer.add_histogram(f"cd/{name}", cd.detach().float().cpu().flatten(), step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self.writer.close()


def build_run(in_dim: int, settings: TrainSettings, device: torch.device,
              info: ddp.DistInfo) -> TrainRun:
    """Head, probe, optimisers and this rank's random streams (DDP-wrapped when distributed)."""
    torch.manual_seed(settings.seed)  # identical initial weights on every rank
    head = SegmentationHead(HeadConfig(in_dim, settings.code_dim, settings.dropout))
    module = StegoModule(head, ClusterProbe(settings.code_dim, settings.clusters)).to(device)
    wrapped: nn.Module = module
    if info.active:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(module, device_ids=ids)
    optimizers = (torch.optim.Adam(head.parameters(), lr=settings.lr),
                  torch.optim.Adam(module.probe.parameters(), lr=settings.probe_lr))
    # Dropout masks and the loss's sample points differ between ranks, as in DDP STEGO.
    torch.manual_seed(_rank_seed(settings.seed, info.rank))
    generator = torch.Generator().manual_seed(_rank_seed(settings.seed + 1, info.rank))
    return TrainRun(module, wrapped, optimizers, generator, settings, device)


def _restore(run: TrainRun, state: dict[str, Any], info: ddp.DistInfo) -> int:
    run.module.load_state_dict(state["module"])
    for opt, opt_state in zip(run.optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    if state["world_size"] == info.world_size:
        _set_rng_state(run, state["rng"][info.rank])
    else:
        log.warning("resuming with %d process(es) after %d: batches and random draws will "
                    "differ from an uninterrupted run", info.world_size, state["world_size"])
        torch.manual_seed(_rank_seed(run.settings.seed + state["step"], info.rank))
    return int(state["step"])


def cache_codes(head: SegmentationHead, cache: FeatureCache, device: torch.device,
                samples: int, seed: int, batch_size: int = 32) -> np.ndarray:
    """Eval-mode code vectors ``[M, D]`` from every cached image, ``samples // N`` pixels each."""
    rng = np.random.default_rng(seed)
    n = len(cache)
    per_image = max(1, samples // n)
    out = []
    head.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            idx = list(range(start, min(start + batch_size, n)))
            code = head(cache.feats(idx).to(device))
            vecs = code.permute(0, 2, 3, 1).reshape(len(idx), -1, code.shape[1]).cpu().numpy()
            for v in vecs:
                take = rng.choice(len(v), size=min(per_image, len(v)), replace=False)
                out.append(v[take])
    return np.concatenate(out).astype(np.float32)


def train_head(cache: FeatureCache, knn: np.ndarray | torch.Tensor, settings: TrainSettings,
               out_dir: str | Path, resume: bool = False, *, backbone: DinoViT | None = None,
               device: str | torch.device = "cpu", classes: Sequence[ClassInfo] | None = None,
               provenance: dict[str, Any] | None = None, progress: bool = True) -> TrainResult:
    """Train the head on ``cache`` with positives from ``knn``; write ``model.pt`` to ``out_dir``.

    ``backbone`` is the frozen network the cache was computed with; its weights are embedded in
    the model file so that export needs nothing else. Its enhancement and resolution are read
    from the cache. Under torch.distributed every rank calls this with the same arguments.
    """
    info = ddp.dist_info()
    check_backbone(backbone, cache)
    out_dir = Path(out_dir)
    device = torch.device(device)
    state_path = out_dir / STATE_FILE
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if state_path.exists() and not resume:
        raise ValueError(f"{out_dir} already holds a training run ({STATE_FILE}); pass "
                         "--resume to continue it or choose another output folder")
    n = len(cache)
    knn = check_knn(knn, n, settings.num_neighbors)
    if settings.clusters > settings.kmeans_samples:
        raise ValueError(f"kmeans_samples {settings.kmeans_samples} < clusters "
                         f"{settings.clusters}")
    in_dim = cache.feature_shape[0]
    run = build_run(in_dim, settings, device, info)
    sampler = EpochSampler(n, settings.batch_size, settings.seed, info)
    start = _restore(run, _load_state(state_path, settings), info) if resume else 0
    logs = _Logs(out_dir, start, info.is_main)
    log.info("training the head: %d images, %d steps from step %d, batch %d x %d process(es), "
             "preset %s", n, settings.steps, start, settings.batch_size, info.world_size,
             settings.preset)
    t0 = time.perf_counter()
    bar = tqdm(total=settings.steps, initial=start, desc="train", unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)
    try:
        for step in range(start + 1, settings.steps + 1):
            anchors = sampler.batch(step - 1)
            positives = draw_positives(knn, anchors, settings.num_neighbors, run.generator)
            feats = cache.feats(anchors.tolist()).to(device, non_blocking=True)
            feats_pos = cache.feats(positives.tolist()).to(device, non_blocking=True)
            terms, probe_loss = train_step(run, feats, feats_pos)
            if not math.isfinite(float(terms.total.detach()) + float(probe_loss)):
                raise FloatingPointError(f"loss became non-finite at step {step}")
            if step % settings.log_every == 0 or step == settings.steps:
                values = _log_values(terms, probe_loss, device)
                values.update(epoch=sampler.epoch_of(step - 1),
                              elapsed_s=time.perf_counter() - t0)
                logs.row(step, values)
                bar.set_postfix(loss=f"{values['loss']:.4f}")
            if step % settings.histogram_every == 0:
                logs.histograms(step, terms)
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                _checkpoint(state_path, run, step, info)
            bar.update(1)
    finally:
        bar.close()
        logs.close()
    probe_centroids = run.module.probe.unit_centroids()
    if info.is_main:
        model = _finish(run, cache, backbone, settings, out_dir, classes, provenance, info)
    ddp.barrier()
    if not info.is_main:
        model = load_trained_model(out_dir / MODEL_FILE)
    return TrainResult(model, out_dir / MODEL_FILE, state_path, logs.path, settings.steps,
                       probe_centroids)


def check_backbone(backbone: DinoViT | None, cache: FeatureCache) -> None:
    """The model file embeds the backbone's weights: they must be the ones of the cache."""
    facts = cache_facts(cache)
    if backbone is None:
        raise ValueError("train_head needs the backbone the cache was built with, to embed "
                         "its weights in the model file")
    if backbone.name != facts["backbone"] or weights_fingerprint(backbone) != facts["weights"]:
        raise ValueError(f"backbone {backbone.name!r} (weights "
                         f"{weights_fingerprint(backbone)}) is not the one the feature cache "
                         f"was built with ({facts['backbone']!r}, weights {facts['weights']})")


def _log_values(terms: CorrelationTerms, probe_loss: torch.Tensor,
                device: torch.device) -> dict[str, float]:
    vec = torch.stack([terms.total.detach(), terms.self_loss.detach(), terms.knn_loss.detach(),
                       terms.random_loss.detach(), probe_loss]).to(device)
    corr, self_l, knn_l, rand_l, cluster = ddp.mean_over_ranks(vec).tolist()
    return {"loss": corr + cluster, "correlation": corr, "self": self_l, "knn": knn_l,
            "random": rand_l, "cluster": cluster}


def _checkpoint(path: Path, run: TrainRun, step: int, info: ddp.DistInfo) -> None:
    rng_states = ddp.gather_objects(_rng_state(run))
    if info.is_main:
        save_state(path, run, step, rng_states)
    ddp.barrier()


def _finish(run: TrainRun, cache: FeatureCache, backbone: DinoViT, settings: TrainSettings,
            out_dir: Path, classes: Sequence[ClassInfo] | None,
            provenance: dict[str, Any] | None, info: ddp.DistInfo) -> TrainedModel:
    """Spherical k-means on the trained code of the whole cache, then the model file."""
    codes = cache_codes(run.head, cache, run.device, settings.kmeans_samples, settings.seed)
    centroids = spherical_kmeans(codes, settings.clusters, seed=settings.seed)
    cosines, clusters = graph_confidences(run.head, cache, centroids, run.device,
                                          settings.kmeans_samples, settings.seed,
                                          upsample=backbone.patch_size)
    calibration = calibrate_cosines(cosines, clusters, settings.clusters,
                                    settings.novelty_quantile)
    facts = cache_facts(cache)
    model = TrainedModel(
        backbone=facts["backbone"],
        backbone_state={k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        head_config=run.head.config,
        head_state={k: v.detach().cpu() for k, v in run.head.state_dict().items()},
        centroids=centroids,
        classes=tuple(classes) if classes is not None else default_classes(settings.clusters),
        enhancement=facts["enhancement"],
        resolution=facts["resolution"],
        provenance={
            "uwstego_version": __version__,
            "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "train_settings": settings.to_dict(),
            "loss_preset": get_preset(settings.preset).to_dict(),
            "processes": info.world_size,
            "images": len(cache),
            "centroids": "spherical MiniBatchKMeans on L2-normalised eval-mode codes",
            "checkpoint_selection": "fixed step count (no labels used)",
            "novelty_calibration": "per-cluster quantiles of the graph's cosine (scores and "
                                   "norm upsampled bilinearly by the patch size) of training "
                                   "pixels",
            **(provenance or {}),
        },
        calibration=calibration,
    )
    save_trained_model(out_dir / MODEL_FILE, model)
    return model


def cache_facts(cache: FeatureCache) -> dict[str, Any]:
    """Backbone id, weights fingerprint, enhancement and resolution of a feature cache."""
    return {"backbone": str(cache.meta["backbone"]), "weights": str(cache.meta["weights"]),
            "resolution": cache.resolution, "enhancement": cache.enhancement}
