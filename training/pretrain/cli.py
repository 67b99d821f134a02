"""``uwstego pretrain``: DINO self-supervised pretraining of a backbone on unlabelled footage.

Several GPUs or nodes: ``torchrun --nproc_per_node 4 --no-python uwstego pretrain ...
--device cuda``, as for ``uwstego train``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uwstego.cli import HelpFormatter

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from uwstego.training.cli import ENHANCEMENTS
    from uwstego.training.pretrain.settings import PretrainSettings

    d = PretrainSettings()
    p = subparsers.add_parser(
        "pretrain", formatter_class=HelpFormatter,
        help="self-supervised DINO pretraining of the backbone on your own footage",
        description="DINO self-distillation (student and EMA teacher ViT, multi-crop) on image "
                    "folders, videos, rosbags or synthetic dives. Writes OUT/checkpoint.pth in "
                    "the official DINO layout (give it to uwstego train --weights) and "
                    "OUT/teacher_backbone.pth. See docs/pretrain.md.")
    p.add_argument("sources", nargs="+", type=Path,
                   help="image folders, video files, rosbag2 folders or synthetic dives")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--backbone", default=d.backbone, help="architecture id (backbone registry)")
    p.add_argument("--weights", type=Path,
                   help="start from these weights (official DINO file or a pretrain checkpoint) "
                        "instead of random ones")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the frames")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per process")
    p.add_argument("--global-size", type=int, default=d.global_size, help="global crops (px)")
    p.add_argument("--local-size", type=int, default=d.local_size, help="local crops (px)")
    p.add_argument("--local-crops", type=int, default=d.local_crops,
                   help="local crops per image")
    p.add_argument("--out-dim", type=int, default=d.out_dim, help="prototypes K of the head")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="peak learning rate at a global batch of 256 (scaled linearly)")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                   help="linear learning-rate warm-up")
    p.add_argument("--teacher-temp", type=float, default=d.teacher_temp,
                   help="teacher temperature after the warm-up")
    p.add_argument("--warmup-teacher-temp", type=float, default=d.warmup_teacher_temp,
                   help="teacher temperature at the start")
    p.add_argument("--warmup-teacher-temp-epochs", type=int,
                   default=d.warmup_teacher_temp_epochs, help="teacher temperature warm-up")
    p.add_argument("--momentum-teacher", type=float, default=d.momentum_teacher,
                   help="teacher EMA momentum at the start (cosine to 1)")
    p.add_argument("--clip-grad", type=float, default=d.clip_grad,
                   help="per-tensor gradient norm limit (0: none)")
    p.add_argument("--freeze-last-layer", type=int, default=d.freeze_last_layer,
                   help="epochs the head's last layer stays fixed")
    p.add_argument("--drop-path", type=float, default=d.drop_path_rate,
                   help="student stochastic depth rate")
    p.add_argument("--fp16", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--frame-size", type=int, default=d.frame_size,
                   help="short side of the cached frames (0: 1.5 x --global-size)")
    p.add_argument("--enhancement", choices=sorted(ENHANCEMENTS), default="default",
                   help="enhancement chain applied to every frame (as train and the vehicle)")
    p.add_argument("--topic", help="image topic of the bags (not given: the camera topic)")
    p.add_argument("--video-stride", type=int, default=1,
                   help="keep every N-th frame of each video file and of each bag topic")
    p.add_argument("--eval-dive", type=Path,
                   help="a labelled synthetic dive (uwstego synth --format folders) held out "
                        "from training: the teacher's patch k-means mIoU on it is logged")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="steps between probe evaluations (0: at the end only)")
    p.add_argument("--eval-size", type=int, default=d.eval_size,
                   help="short side of the evaluation frames (0: --global-size)")
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation and sampling seed")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="log.csv, TensorBoard and a log line every N steps")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="write the resumable checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    from uwstego.training import distributed as ddp
    from uwstego.training.backbones import backbone_config
    from uwstego.training.cli import ENHANCEMENTS
    from uwstego.training.pipeline import PipelineSettings, open_sources
    from uwstego.training.pretrain.loop import run_pretraining
    from uwstego.training.pretrain.settings import PretrainSettings

    backbone_config(args.backbone)  # an unknown id stops before any frame is read
    if args.weights is not None and not args.weights.is_file():
        raise FileNotFoundError(f"--weights {args.weights} does not exist")
    if args.eval_dive is not None and not args.eval_dive.is_dir():
        raise FileNotFoundError(f"--eval-dive {args.eval_dive} does not exist")
    settings = PretrainSettings(
        backbone=args.backbone, epochs=args.epochs, batch_size=args.batch_size,
        global_size=args.global_size, local_size=args.local_size, local_crops=args.local_crops,
        out_dim=args.out_dim, lr=args.lr, warmup_epochs=args.warmup_epochs,
        teacher_temp=args.teacher_temp, warmup_teacher_temp=args.warmup_teacher_temp,
        warmup_teacher_temp_epochs=args.warmup_teacher_temp_epochs,
        momentum_teacher=args.momentum_teacher, clip_grad=args.clip_grad,
        freeze_last_layer=args.freeze_last_layer, drop_path_rate=args.drop_path,
        fp16=args.fp16, frame_size=args.frame_size, eval_every=args.eval_every,
        eval_size=args.eval_size, seed=args.seed, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every)
    sources = open_sources(args.sources, PipelineSettings(topic=args.topic,
                                                          video_stride=args.video_stride))
    info = ddp.init_from_env(args.device)
    try:
        result = run_pretraining(
            sources, args.out, settings, enhancement=ENHANCEMENTS[args.enhancement](),
            weights=args.weights, resume=args.resume,
            device=str(ddp.process_device(args.device, info)), eval_dive=args.eval_dive)
    finally:
        ddp.shutdown()
    if info.is_main:
        log.info("checkpoint (official DINO layout): %s; teacher backbone: %s",
                 result.checkpoint, result.teacher_backbone)
    return 0
