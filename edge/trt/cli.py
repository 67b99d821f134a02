"""``uwstego build-engine``: build (or find) this system's TensorRT engine for a bundle.

What the node does on its first start, as a command for the vehicle: torch-free, so it runs on a
Jetson with the ``edge`` extra and JetPack's TensorRT.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from uwstego.bundle import load_bundle
from uwstego.cli import HelpFormatter
from uwstego.errors import missing_package
from uwstego.trt import missing_packages
from uwstego.trt.builder import PRECISIONS

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build-engine", formatter_class=HelpFormatter,
        help="build and cache this system's TensorRT engine for a bundle",
        description="Find the bundle's cached engine for this GPU and TensorRT release, or build "
                    "it (minutes). Stale or foreign engines are never loaded; the log says why "
                    "one is rebuilt.")
    p.add_argument("bundle", type=Path, help="deploy bundle folder")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="engine precision (fp16 keeps LayerNorm, Softmax and Reduce in fp32)")
    p.add_argument("--cache-dir", type=Path,
                   help="engine cache folder (default: the bundle's engines/)")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached engine fits")
    p.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit")
    p.add_argument("--check", type=int, default=4, metavar="N",
                   help="compare with ONNX Runtime on N synthetic frames and time it (0: skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = missing_packages()
    if missing:
        log.error("%s", missing_package("build-engine", missing, hint="JetPack ships tensorrt"))
        return 2
    from uwstego.sample_frames import synthetic_frames
    from uwstego.trt.check import check_engine
    from uwstego.trt.engine import ensure_engine

    bundle = load_bundle(args.bundle)
    plan = ensure_engine(bundle, args.precision, args.cache_dir, force=args.force,
                         workspace_bytes=args.workspace_mb << 20)
    result = {"engine": str(plan)}
    if args.check > 0:
        frames = synthetic_frames(bundle.meta.camera, args.check)
        result["check"] = check_engine(bundle, frames, args.precision, args.cache_dir)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
