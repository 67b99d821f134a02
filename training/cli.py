"""The training sub-commands of ``uwstego``: ``train``, ``evaluate`` and ``clusters``.

Each ``register_<cmd>`` adds one sub-parser (entry-point group ``uwstego.commands``). Several
GPUs or nodes: launch the same command under torchrun, e.g.
``torchrun --nproc_per_node 4 --no-python uwstego train ... --device cuda``; every process joins
the group torchrun describes (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from uwstego.cli import HelpFormatter
from uwstego.enhance import EnhanceSettings
from uwstego.path_text import text_path

if TYPE_CHECKING:  # torch stays out of command registration (the vehicle has none)
    from uwstego.training.artifact import TrainedModel
    from uwstego.training.gallery import View

log = logging.getLogger(__name__)

_FORMATTER = HelpFormatter
ENHANCEMENTS = {"default": EnhanceSettings, "raw": EnhanceSettings.raw,
                "clahe": lambda: EnhanceSettings(clahe=True)}


def register_train(subparsers: argparse._SubParsersAction) -> None:
    from uwstego.training.presets import DEFAULT_PRESET, PRESETS
    from uwstego.training.settings import PipelineSettings, TrainSettings

    d, pd = TrainSettings(), PipelineSettings()
    p = subparsers.add_parser(
        "train", formatter_class=_FORMATTER,
        help="train the STEGO head on image folders, videos or rosbags",
        description="Frozen DINO features are computed once into OUT/features, KNN positives "
                    "found, the head trained and its clusters written to OUT/model.pt. Runs "
                    "under torchrun for several GPUs/nodes (see the README).")
    p.add_argument("sources", nargs="+", type=Path,
                   help="image folders, video files or rosbag2 folders")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--backbone", default=pd.backbone, help="backbone id")
    p.add_argument("--weights", type=Path, help="official DINO weights file for the backbone")
    p.add_argument("--clusters", type=int, default=d.clusters, help="number of clusters K")
    p.add_argument("--steps", type=int, default=d.steps, help="head training steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--resolution", type=int, default=pd.resolution,
                   help="training crop size (px)")
    p.add_argument("--crop-type", default=pd.crop_type,
                   help="crops per frame: five, full, or five+full (STEGO's five-crop plus the "
                        "whole frame)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                   help="published STEGO loss weights and shifts to train with")
    p.add_argument("--code-dim", type=int, default=d.code_dim,
                   help="channels of the head's output code (what is clustered)")
    p.add_argument("--lr", type=float, default=d.lr, help="head learning rate (Adam)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the head's initialisation, batches and k-means")
    p.add_argument("--enhancement", choices=sorted(ENHANCEMENTS), default="default",
                   help="enhancement chain the head is trained on (and the vehicle runs)")
    p.add_argument("--knn-exclude-window", type=int, default=None, metavar="FRAMES",
                   help="rank neighbours within this many frames of the same video last "
                        "(not given: no such rule)")
    p.add_argument("--topic", help="image topic of the bags (not given: the bag's camera "
                   "topic; a bag with several cameras is refused with their list: name one)")
    p.add_argument("--video-stride", type=int, default=pd.video_stride,
                   help="keep every N-th frame of each video file and of each bag topic "
                        "(image folders are never thinned)")
    p.add_argument("--novelty-quantile", type=float, default=d.novelty_quantile,
                   help="per-cluster quantile of the training pixels' cosine to their "
                        "centroid below which a pixel is unknown (novel)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="save the resumable training state every N steps")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="write train_log.csv and TensorBoard every N steps")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.add_argument("--random-weights", action="store_true",
                   help="smoke run only: train on a RANDOMLY initialised backbone when no "
                        "--weights are given (the clusters then mean nothing; warned loudly)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from uwstego.training import distributed as ddp
    from uwstego.training.pipeline import run_training
    from uwstego.training.settings import PipelineSettings, TrainSettings
    from uwstego.training.stop import TrainingInterrupted

    if args.random_weights and args.weights is None:
        log.warning("%s\n--random-weights: training on a RANDOMLY INITIALISED %s. Its features "
                    "mean nothing: use the result for smoke runs only, never on a vehicle.\n%s",
                    "!" * 78, args.backbone, "!" * 78)
    elif args.random_weights:
        log.warning("--random-weights is ignored: the weights file %s is used", args.weights)
    text_path(args.out, "output folder", "TensorBoard's event files")
    info = ddp.init_from_env(args.device)
    device = str(ddp.process_device(args.device, info))
    try:
        pipeline = PipelineSettings(
            backbone=args.backbone, weights=args.weights, resolution=args.resolution,
            crop_type=args.crop_type, enhancement=ENHANCEMENTS[args.enhancement](),
            knn_exclude_window=args.knn_exclude_window, topic=args.topic,
            video_stride=args.video_stride, allow_random_weights=args.random_weights)
        train = TrainSettings(preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                              lr=args.lr, clusters=args.clusters, code_dim=args.code_dim,
                              seed=args.seed, checkpoint_every=args.checkpoint_every,
                              log_every=args.log_every,
                              novelty_quantile=args.novelty_quantile)
        result = run_training(args.sources, args.out, pipeline, train, resume=args.resume,
                              device=device)
    except TrainingInterrupted as stopped:
        if info.is_main:
            log.warning("%s; resume with: %s", stopped, resume_command())
        return stopped.exit_code
    finally:
        ddp.shutdown()
    if info.is_main:
        log.info("model written to %s", result.model_path)
    return 0


def resume_command() -> str:
    """This process's ``uwstego train`` command line with ``--resume``, ready to paste."""
    argv = sys.argv[1:]
    if "train" not in argv:  # called as a library, not from the command line
        return "the same uwstego train command with --resume"
    argv = argv[argv.index("train"):]
    return shlex.join(["uwstego", *argv, *([] if "--resume" in argv else ["--resume"])])


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    from uwstego.training.masks import MASK_KINDS
    from uwstego.training.settings import INTERPOLATIONS, EvalSettings

    d = EvalSettings()
    p = subparsers.add_parser(
        "evaluate", formatter_class=_FORMATTER,
        help="mIoU / accuracy of a trained model or an exported bundle on labelled images",
        description="STEGO's protocol: whole-set confusion matrix, Hungarian matching of "
                    "clusters to classes, mIoU and pixel accuracy; per-class IoU table, a "
                    "confusion-matrix PNG (ground truth on rows) and example pictures "
                    "(image | prediction | ground truth) in OUT/overlays. A bundle is scored "
                    "by running its deployed graph with ONNX Runtime.")
    p.add_argument("model", type=Path,
                   help="model.pt, a training output folder, or an exported bundle folder")
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--masks", type=Path, required=True,
                   help="folder of masks with the images' file names (SUIM colour or index)")
    p.add_argument("--out", type=Path,
                   help="folder for scores.json, the table, the PNG and the overlays")
    p.add_argument("--overlays", type=int, default=4,
                   help="example pictures written to OUT/overlays (0: none)")
    p.add_argument("--mask-kind", choices=MASK_KINDS, default=d.mask_kind,
                   help="suim: colour masks; index: pixel values are class ids; auto: suim for "
                        "colour files, index for single-channel ones")
    p.add_argument("--num-classes", type=int, help="ground-truth classes (default: SUIM's 8 "
                   "for colour masks, else the largest label + 1)")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help="short side the images are resized to, then centre-cropped (px)")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=d.interpolation,
                   help="image resize (labels always nearest)")
    p.add_argument("--flip", action="store_true",
                   help="average with the mirrored image (model.pt only)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from uwstego.training.evaluate import evaluate
    from uwstego.training.settings import EvalSettings

    settings = EvalSettings(resolution=args.resolution, interpolation=args.interpolation,
                            flip=args.flip, mask_kind=args.mask_kind,
                            num_classes=args.num_classes)
    report = evaluate(args.model, args.images, args.masks, settings, device=args.device,
                      out_dir=args.out, overlays=args.overlays)
    print(report.table())
    return 0


def register_clusters(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "clusters", formatter_class=_FORMATTER,
        help="gallery of example patches per cluster; name (and merge) the clusters",
        description="Writes OUT/index.html, gallery.png and classes.yaml. Edit the names and "
                    "colours in classes.yaml (clusters given the same name merge into one "
                    "class), then put them into the model with --apply, which also "
                    "regenerates the gallery.")
    p.add_argument("model", type=Path, help="model.pt or a training output folder")
    p.add_argument("sources", nargs="*", type=Path,
                   help="images, videos or bags to take examples from (default: the model's "
                        "training feature cache)")
    p.add_argument("--out", type=Path, help="gallery folder (default: <model folder>/gallery)")
    p.add_argument("--apply", type=Path, metavar="NAMES_YAML",
                   help="write these names and colours into the model file, then regenerate "
                        "the gallery")
    p.add_argument("--per-cluster", type=int, default=8, help="examples per cluster")
    p.add_argument("--max-images", type=int, default=200,
                   help="images (or cached crops) to look through for examples")
    p.add_argument("--topic", help="image topic of the bags (not given: every image topic)")
    p.add_argument("--video-stride", type=int, default=1,
                   help="keep every N-th frame of each video file and of each bag topic")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_clusters)


def _views(model: TrainedModel, args: argparse.Namespace) -> Iterator[View]:
    """Where the gallery's examples come from: the sources given, else the training cache."""
    from uwstego.training.features import FeatureCache
    from uwstego.training.gallery import cache_views, source_views
    from uwstego.training.pipeline import open_sources
    from uwstego.training.settings import PipelineSettings

    if args.sources:
        sources = open_sources(args.sources, PipelineSettings(topic=args.topic,
                                                              video_stride=args.video_stride))
        return source_views(model, sources, args.max_images, args.device)
    cache_dir = model.provenance.get("feature_cache")
    if not cache_dir or not os.path.isdir(cache_dir):
        raise FileNotFoundError(f"the feature cache the model was trained on ({cache_dir}) "
                                "is gone: pass image sources to take examples from")
    return cache_views(model, FeatureCache.open(cache_dir), args.max_images, args.device)


def _clusters(args: argparse.Namespace) -> int:
    from uwstego.training.artifact import load_trained_model
    from uwstego.training.gallery import write_gallery
    from uwstego.training.naming import apply_names, model_file
    from uwstego.training.trust import model_trust

    model_path = model_file(args.model)
    for path, what in ((model_path, "model"), (args.out, "gallery folder")):
        if path is not None:
            text_path(path, what, "the gallery's HTML page")
    if args.apply:
        model = apply_names(model_path, args.apply, args.device)
    else:
        model = load_trained_model(model_path)
    if model.calibration is None:
        log.info("%s has no novelty calibration (novelty unavailable)", model_path)
    else:
        from uwstego.novelty import describe

        for line in describe(model.calibration, [c.name for c in model.classes]):
            log.info("%s", line)
    facts = model_trust(model.provenance, model.backbone, model.num_clusters)
    if facts.random:
        log.warning("%s was trained on RANDOM backbone weights: its clusters mean nothing "
                    "(the gallery says so in a banner)", model_path)
    out = args.out or model_path.parent / "gallery"
    try:
        views = _views(model, args)
    except FileNotFoundError as exc:
        if not args.apply:
            raise
        log.warning("the names are in %s, but the gallery was not regenerated: %s", model_path,
                    exc)
        return 0
    result = write_gallery(model, views, out, args.per_cluster, model_path=str(model_path),
                           keep_names=not args.apply)
    log.info("gallery: %s; names file: %s", result.html, result.classes_yaml)
    return 0
