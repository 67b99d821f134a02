"""``uwstego import-stego``: a published STEGO checkpoint as a ``model.pt`` for export."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uwstego.training.stego_datasets import DATASET_CLASSES, DEFAULT_RESOLUTION, PROBES

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-stego",
        help="convert an official STEGO checkpoint (.ckpt) into a model.pt",
        description="Reads an official STEGO Lightning checkpoint without running code from "
                    "it (hyper-parameters are read as plain values or the file is refused), "
                    "identifies the DINO backbone from its tensors and writes a model.pt that "
                    "labels as the official inference does (backbone, head, upsampled code, "
                    "cosine to the cluster probe, argmax; no flip, no CRF). Export it with "
                    "`uwstego export` / `export-trt` like a trained model.")
    p.add_argument("checkpoint", type=Path, help="the STEGO .ckpt file")
    p.add_argument("--out", type=Path, required=True, help="model file to write (model.pt)")
    p.add_argument("--probe", choices=PROBES, default="cluster",
                   help="cluster (the default): the unsupervised clusters, named cluster_i; "
                        "linear: the supervised linear probe, named after the dataset's classes")
    p.add_argument("--names", type=Path, help="class names: a classes.yaml (names and "
                   "colours) or a text file with one name per line (default: cluster_i, or the "
                   "dataset's names with --probe linear)")
    p.add_argument("--dataset", choices=sorted(DATASET_CLASSES),
                   help="dataset of the linear probe's classes (default: from the "
                        "checkpoint's hyper-parameters, else from the class count where only "
                        "one dataset has it)")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                   help=f"short side the exported network runs at (default: "
                        f"{DEFAULT_RESOLUTION}, the size STEGO evaluates at)")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from uwstego.training.artifact import save_trained_model
    from uwstego.training.stego_import import convert_stego_checkpoint

    model = convert_stego_checkpoint(args.checkpoint, probe=args.probe, names=args.names,
                                     dataset=args.dataset, resolution=args.resolution)
    save_trained_model(args.out, model)
    log.info("wrote %s: %s, %d classes (%s probe); next: uwstego export %s ...", args.out,
             model.backbone, model.num_clusters, args.probe, args.out)
    return 0
