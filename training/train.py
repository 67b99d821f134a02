"""Training the STEGO head from cached backbone features: the loop (docs/stego.md §7).

One step is :func:`uwstego.training.step.train_step`; the batches come from
:mod:`uwstego.training.batches`, the
resumable state from :mod:`uwstego.training.train_state`, the logs from
:mod:`uwstego.training.train_log`, and
the final k-means and model file from :mod:`uwstego.training.final_model`.

Under ``torch.distributed`` (torchrun) every rank takes its own slice of each epoch's shuffled
order and rank 0 writes logs, checkpoints and the final model. The batch size is per process, as
in the official code.

Resuming: the state is written atomically every ``checkpoint_every`` steps, at the last step,
and when SIGINT or SIGTERM stops the run (:mod:`uwstego.training.stop`); ``resume=True`` continues
from
it and reproduces the uninterrupted run when the number of processes is unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from uwstego.classes import ClassInfo
from uwstego.training import distributed as ddp
from uwstego.training import step as step_module
from uwstego.training.artifact import MODEL_FILE, TrainedModel, load_trained_model
from uwstego.training.backbones import DinoViT
from uwstego.training.batches import EpochSampler, check_knn, draw_positives
from uwstego.training.features import FeatureCache
from uwstego.training.final_model import check_backbone, write_model
from uwstego.training.settings import TrainSettings
from uwstego.training.stop import StopRequests, TrainingInterrupted
from uwstego.training.train_log import LOG_FILE, TrainLog, loss_values
from uwstego.training.train_state import STATE_FILE, checkpoint, load_state, restore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model: TrainedModel
    model_path: Path
    state_path: Path
    log_path: Path
    steps: int
    probe_centroids: np.ndarray  # the online probe's unit centroids, for comparison


def check_new_run(out_dir: Path, resume: bool) -> None:
    """A folder that holds a run is continued only on request."""
    if (out_dir / STATE_FILE).exists() and not resume:
        raise ValueError(f"{out_dir} already holds a training run ({STATE_FILE}); pass "
                         "--resume to continue it or choose another output folder")


def _check_resumable(start: int, settings: TrainSettings, out_dir: Path) -> None:
    if start > settings.steps:
        raise ValueError(f"cannot resume {out_dir}: its training state is at step {start}, "
                         f"past --steps {settings.steps}; its model is "
                         f"{out_dir / MODEL_FILE} (pass --steps above {start} to train on)")


def train_head(cache: FeatureCache, knn: np.ndarray | torch.Tensor, settings: TrainSettings,
               out_dir: str | Path, resume: bool = False, *, backbone: DinoViT | None = None,
               device: str | torch.device = "cpu", classes: Sequence[ClassInfo] | None = None,
               provenance: dict[str, Any] | None = None, progress: bool = True) -> TrainResult:
    """Train the head on ``cache`` with positives from ``knn``; write ``model.pt`` to ``out_dir``.

    ``backbone`` is the frozen network the cache was computed with; its weights are embedded in
    the model file so that export needs nothing else. Its enhancement and resolution are read
    from the cache. Under torch.distributed every rank calls this with the same arguments.
    SIGINT/SIGTERM save the state and raise :class:`uwstego.training.stop.TrainingInterrupted`.
    """
    info = ddp.dist_info()
    check_backbone(backbone, cache)
    out_dir = Path(out_dir)
    device = torch.device(device)
    state_path, model_path = out_dir / STATE_FILE, out_dir / MODEL_FILE
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    check_new_run(out_dir, resume)
    n = len(cache)
    knn = check_knn(knn, n, settings.num_neighbors)
    if settings.clusters > settings.kmeans_samples:
        raise ValueError(f"kmeans_samples {settings.kmeans_samples} < clusters "
                         f"{settings.clusters}")
    run = step_module.build_run(cache.feature_shape[0], settings, device, info)
    sampler = EpochSampler(n, settings.batch_size, settings.seed, info)
    start = restore(run, load_state(state_path, settings), info) if resume else 0
    _check_resumable(start, settings, out_dir)
    if start == settings.steps and model_path.is_file():
        if info.is_main:
            log.info("nothing to do: %s finished all %d steps and holds %s", out_dir, start,
                     model_path)
        return TrainResult(load_trained_model(model_path), model_path, state_path,
                           out_dir / LOG_FILE, settings.steps,
                           run.module.probe.unit_centroids())
    _loop(run, cache, knn, sampler, start, out_dir, progress, info)
    probe_centroids = run.module.probe.unit_centroids()
    if info.is_main:
        model = write_model(model_path, run.head, cache, backbone, settings, run.device,
                            classes, {"processes": info.world_size, **(provenance or {})})
    ddp.barrier()
    if not info.is_main:
        model = load_trained_model(model_path)
    return TrainResult(model, model_path, state_path, out_dir / LOG_FILE, settings.steps,
                       probe_centroids)


def _loop(run: step_module.TrainRun, cache: FeatureCache, knn: np.ndarray,
          sampler: EpochSampler, start: int, out_dir: Path, progress: bool,
          info: ddp.DistInfo) -> None:
    """Steps ``start + 1 .. settings.steps``, with logs and checkpoints."""
    settings, device = run.settings, run.device
    state_path = out_dir / STATE_FILE
    logs = TrainLog(out_dir, start, info.is_main)
    log.info("training the head: %d images, %d steps from step %d, batch %d x %d process(es), "
             "preset %s", len(cache), settings.steps, start, settings.batch_size,
             info.world_size, settings.preset)
    t0 = time.perf_counter()
    bar = tqdm(total=settings.steps, initial=start, desc="train", unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)
    try:
        with StopRequests() as stop:
            for step in range(start + 1, settings.steps + 1):
                anchors = sampler.batch(step - 1)
                positives = draw_positives(knn, anchors, settings.num_neighbors, run.generator)
                feats = cache.feats(anchors.tolist()).to(device, non_blocking=True)
                feats_pos = cache.feats(positives.tolist()).to(device, non_blocking=True)
                # Looked up on the module at every step, so a test can wrap it.
                terms, probe_loss = step_module.train_step(run, feats, feats_pos)
                if not math.isfinite(float(terms.total.detach()) + float(probe_loss)):
                    raise FloatingPointError(f"loss became non-finite at step {step}")
                if step % settings.log_every == 0 or step == settings.steps:
                    values = loss_values(terms, probe_loss, device)
                    values.update(epoch=sampler.epoch_of(step - 1),
                                  elapsed_s=time.perf_counter() - t0)
                    logs.row(step, values)
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                if step % settings.histogram_every == 0:
                    logs.histograms(step, terms)
                signum = stop.requested(device)
                if step % settings.checkpoint_every == 0 or step == settings.steps or signum:
                    checkpoint(state_path, run, step, info)
                if signum:
                    raise TrainingInterrupted(step, state_path, signum)
                bar.update(1)
    finally:
        bar.close()
        logs.close()
