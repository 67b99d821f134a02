"""The pretraining loop: student and EMA teacher over multi-crop batches of the frame cache
(docs/pretrain.md). Every DDP rank calls :func:`run_pretraining` alike; rank 0 writes."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from uwstego.atomic import write_json_atomic
from uwstego.enhance import EnhanceSettings
from uwstego.training import distributed as ddp
from uwstego.training.backbones import backbone_config, load_weights
from uwstego.training.backbones.vit import DinoViT
from uwstego.training.data.sources import Source
from uwstego.training.pretrain.augment import multi_crop_batch, policies
from uwstego.training.pretrain.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    save_checkpoint,
    save_teacher_backbone,
    strip_ddp,
)
from uwstego.training.pretrain.frames import load_frames
from uwstego.training.pretrain.head import DinoHead
from uwstego.training.pretrain.loss import DinoLoss
from uwstego.training.pretrain.monitor import COLUMNS, RunLog, collapse, teacher_entropies
from uwstego.training.pretrain.network import MultiCropNet, add_drop_path
from uwstego.training.pretrain.optim import (
    cancel_last_layer_gradients,
    clip_gradients,
    ema_update,
    param_groups,
    set_schedule,
)
from uwstego.training.pretrain.probe import LabelledFrames, load_labelled_dive, patch_kmeans_miou
from uwstego.training.pretrain.schedules import cosine_schedule, teacher_temperature
from uwstego.training.pretrain.settings import PretrainSettings

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher_backbone.pth"
SUMMARY_FILE = "summary.json"
# Settings a resumed run may change: they do not alter what is trained.
_RESUMABLE_CHANGES = frozenset({"log_every", "checkpoint_every", "eval_every"})


@dataclass(frozen=True)
class PretrainResult:
    checkpoint: Path
    teacher_backbone: Path
    steps: int
    summary: dict[str, Any]


@dataclass(frozen=True)
class Schedules:
    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    iters_per_epoch: int

    @property
    def total(self) -> int:
        return len(self.lr)


def make_schedules(settings: PretrainSettings, frames: int, world_size: int) -> Schedules:
    global_batch = settings.batch_size * world_size
    ipe = frames // global_batch
    if ipe < 1:
        raise ValueError(f"{frames} frames are fewer than one global batch of {global_batch} "
                         "(batch size x processes): lower --batch-size or add footage")
    lr = settings.lr * global_batch / 256.0  # the linear scaling rule
    return Schedules(
        cosine_schedule(lr, settings.min_lr, settings.epochs, ipe, settings.warmup_epochs),
        cosine_schedule(settings.weight_decay, settings.weight_decay_end, settings.epochs, ipe),
        cosine_schedule(settings.momentum_teacher, 1.0, settings.epochs, ipe),
        ipe)


def build_networks(settings: PretrainSettings, weights: Path | None
                   ) -> tuple[MultiCropNet, MultiCropNet]:
    """Student (with stochastic depth) and teacher, equal weights; the teacher frozen."""
    config = backbone_config(settings.backbone)

    def net() -> MultiCropNet:
        return MultiCropNet(DinoViT(config, settings.backbone),
                            DinoHead(config.embed_dim, settings.out_dim, settings.hidden_dim,
                                     settings.bottleneck_dim, settings.norm_last_layer))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # every rank starts from the same network
        student = net()
    if weights is not None:
        load_weights(student.backbone, weights)
    add_drop_path(student.backbone, settings.drop_path_rate)
    teacher = net()
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    return student, teacher


def batch_indices(n: int, step: int, ipe: int, settings: PretrainSettings,
                  info: ddp.DistInfo) -> np.ndarray:
    """This rank's frames for ``step``: a fresh permutation each epoch, split among ranks,
    drawn from (seed, epoch) only, so a resumed run draws the same batches."""
    epoch, i = divmod(step, ipe)
    order = np.random.default_rng([settings.seed, epoch]).permutation(n)
    share = order[info.rank::info.world_size]
    return np.sort(share[i * settings.batch_size:(i + 1) * settings.batch_size])


def _check_resume(saved: dict[str, Any], settings: PretrainSettings, path: Path) -> None:
    now = settings.to_dict()
    saved = PretrainSettings.from_dict(saved).to_dict()
    changed = [k for k in now if k not in _RESUMABLE_CHANGES and saved[k] != now[k]]
    if changed:
        raise ValueError(f"cannot resume {path}: settings changed since it was written: "
                         + ", ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in changed))


def _to_device(batches: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    return [torch.from_numpy(b).to(device, non_blocking=True) for b in batches]


def run_pretraining(sources: list[Source], out_dir: str | Path, settings: PretrainSettings,
                    *, enhancement: EnhanceSettings | None = None, weights: Path | None = None,
                    resume: bool = False, device: str = "cpu", eval_dive: Path | None = None,
                    progress: bool = True) -> PretrainResult:
    out_dir = Path(out_dir)
    enhancement = enhancement or EnhanceSettings()
    info = ddp.dist_info()
    dev = torch.device(device)
    ckpt_path = out_dir / CHECKPOINT_FILE
    if ckpt_path.exists() and not resume:
        raise ValueError(f"{out_dir} already holds a pretraining run ({CHECKPOINT_FILE}); pass "
                         "--resume to continue it or choose another output folder")
    if resume and not ckpt_path.exists():
        raise ValueError(f"nothing to resume: {ckpt_path} does not exist (run without --resume)")
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    frames = load_frames(sources, enhancement, settings.cached_frame_size, out_dir, progress)
    sched = make_schedules(settings, len(frames), info.world_size)
    temps = teacher_temperature(settings.warmup_teacher_temp, settings.teacher_temp,
                                settings.warmup_teacher_temp_epochs, settings.epochs)
    student, teacher = build_networks(settings, weights)
    student.to(dev)
    teacher.to(dev)
    crop_policies = policies(settings.global_size, settings.local_size, settings.local_crops,
                             settings.global_scale, settings.local_scale)
    dino_loss = DinoLoss(settings.out_dim, len(crop_policies), temps, settings.student_temp,
                         settings.center_momentum).to(dev)
    optimizer = torch.optim.AdamW(param_groups(student))
    use_amp = settings.fp16 and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    start = 0
    if resume:
        state = load_checkpoint(ckpt_path)
        _check_resume(state["settings"], settings, ckpt_path)
        student.load_state_dict(strip_ddp(state["student"]))
        teacher.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        dino_loss.load_state_dict(state["dino_loss"])
        if scaler is not None and "fp16_scaler" in state:
            scaler.load_state_dict(state["fp16_scaler"])
        start = int(state["step"])
        if info.is_main:
            log.info("resuming %s at step %d of %d", ckpt_path, start, sched.total)
    model = (torch.nn.parallel.DistributedDataParallel(student) if info.active else student)
    probe_data: LabelledFrames | None = None
    if eval_dive is not None and info.is_main:
        probe_data = load_labelled_dive(eval_dive, enhancement, settings.eval_frame_size,
                                        student.backbone.patch_size, settings.eval_clusters)
    logs = RunLog(out_dir, start, info.is_main)
    if info.is_main:
        log.info("pretraining %s: %d frames, %d steps (%d epochs x %d), batch %d x %d "
                 "process(es), %d crops per image", settings.backbone, len(frames), sched.total,
                 settings.epochs, sched.iters_per_epoch, settings.batch_size, info.world_size,
                 len(crop_policies))
    saved_settings = settings.to_dict()
    t0, images = time.perf_counter(), 0
    probe_miou: float | None = None
    bar = tqdm(total=sched.total, initial=start, desc="pretrain", unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)

    def checkpoint(step: int) -> None:
        if info.is_main:
            save_checkpoint(ckpt_path, student=student, teacher=teacher, optimizer=optimizer,
                            dino_loss=dino_loss, epoch=step // sched.iters_per_epoch, step=step,
                            settings=saved_settings, scaler=scaler)

    try:
        for it in range(start, sched.total):
            epoch = it // sched.iters_per_epoch
            idx = batch_indices(len(frames), it, sched.iters_per_epoch, settings, info)
            rng = np.random.default_rng([settings.seed, it, info.rank])
            torch.manual_seed(settings.seed * 1_000_003 + it * info.world_size + info.rank)
            crops = _to_device(multi_crop_batch([np.asarray(frames[i]) for i in idx],
                                                crop_policies, rng), dev)
            set_schedule(optimizer, float(sched.lr[it]), float(sched.weight_decay[it]))
            amp = (torch.autocast("cuda", dtype=torch.float16) if use_amp
                   else contextlib.nullcontext())
            with amp:
                teacher_out = teacher(crops[:2])
                student_out = model(crops)
                logging_step = (it + 1) % settings.log_every == 0 or it + 1 == sched.total
                probs = dino_loss.teacher_probs(teacher_out, epoch) if logging_step else None
                loss = dino_loss(student_out, teacher_out, epoch)
            if not math.isfinite(float(loss.detach())):
                raise RuntimeError(f"the DINO loss became {float(loss.detach())} at step {it + 1}: "
                                   "lower --lr or --clip-grad and resume from the last "
                                   "checkpoint with --resume")
            optimizer.zero_grad(set_to_none=True)
            norms: list[float] = []
            if scaler is not None:
                scaler.scale(loss).backward()
                if settings.clip_grad:
                    scaler.unscale_(optimizer)
                    norms = clip_gradients(student, settings.clip_grad)
                cancel_last_layer_gradients(student, epoch, settings.freeze_last_layer)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if settings.clip_grad:
                    norms = clip_gradients(student, settings.clip_grad)
                cancel_last_layer_gradients(student, epoch, settings.freeze_last_layer)
                optimizer.step()
            ema_update(teacher, student, float(sched.momentum[it]))
            images += len(idx) * info.world_size
            step = it + 1
            if settings.eval_every and step % settings.eval_every == 0 and probe_data:
                probe_miou = patch_kmeans_miou(teacher.backbone, probe_data,
                                               settings.eval_clusters, settings.seed)
                log.info("step %d: teacher patch k-means mIoU %.2f %% on %s", step, probe_miou,
                         eval_dive)
            if probs is not None:
                elapsed = time.perf_counter() - t0
                ent = teacher_entropies(probs)
                rate = images / elapsed
                values: dict[str, Any] = {
                    "step": step, "epoch": epoch, "loss": float(ddp.mean_over_ranks(
                        loss.detach().float())), "lr": float(sched.lr[it]),
                    "weight_decay": float(sched.weight_decay[it]),
                    "momentum": float(sched.momentum[it]), "teacher_temp": float(
                        temps[min(epoch, len(temps) - 1)]),
                    "teacher_entropy": ent.sample, "batch_entropy": ent.batch,
                    "grad_norm": max(norms, default=0.0), "images_per_s": rate,
                    "elapsed_s": elapsed, "probe_miou": "" if probe_miou is None else probe_miou}
                assert set(values) == set(COLUMNS)
                logs.row(values)
                problem = collapse(ent, settings.out_dim)
                if problem and info.is_main:
                    log.warning("step %d: the teacher looks collapsed (%s)", step, problem)
                if info.is_main:
                    eta = (sched.total - step) * elapsed / max(step - start, 1)
                    log.info("step %d/%d epoch %d loss %.4f teacher entropy %.3f (batch %.3f) "
                             "%.1f img/s, ETA %.0f s", step, sched.total, epoch, values["loss"],
                             ent.sample, ent.batch, rate, eta)
                probe_miou = None
            if step % settings.checkpoint_every == 0 or step == sched.total:
                checkpoint(step)
            bar.update(1)
    finally:
        bar.close()
        logs.close()
    elapsed = time.perf_counter() - t0
    teacher_path = out_dir / TEACHER_FILE
    summary: dict[str, Any] = {}
    if info.is_main:
        save_teacher_backbone(ckpt_path, teacher_path, torch.float32)
        summary = {"steps": sched.total, "resumed_at": start, "frames": len(frames),
                   "processes": info.world_size, "wall_s": round(elapsed, 1),
                   "images_per_s": round(images / elapsed, 3) if elapsed else None,
                   "device": str(dev), "settings": saved_settings}
        if probe_data is not None:
            summary["probe_miou"] = patch_kmeans_miou(teacher.backbone, probe_data,
                                                      settings.eval_clusters, settings.seed)
            log.info("final teacher patch k-means mIoU %.2f %% on %s", summary["probe_miou"],
                     eval_dive)
        write_json_atomic(out_dir / SUMMARY_FILE, summary)
    ddp.barrier()
    return PretrainResult(ckpt_path, teacher_path, sched.total, summary)
