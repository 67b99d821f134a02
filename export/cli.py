"""``export-trt`` (also ``uwstego export``): a trained model to a deploy bundle for one camera."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.cli import configure_logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="trained model file (model.pt) or its folder")
    p.add_argument("--camera-size", required=True, metavar="WxH",
                   help="camera frame size the graph takes, e.g. 1280x720")
    p.add_argument("--network-size", metavar="WxH",
                   help="ViT input size: multiples of the patch size with the camera's aspect "
                        "(default: short side at the training resolution)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="TensorRT engine precision (the ONNX graph is always fp32)")
    p.add_argument("--samples", type=Path,
                   help="folder of images for the parity check (default: synthetic frames)")
    p.add_argument("--frames", type=int, default=4, help="number of parity-check frames")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames")
    p.add_argument("--engine", choices=("auto", "skip", "require"), default="auto",
                   help="build the TensorRT engine: when TensorRT imports (auto), always "
                        "(require: fail without it) or never (skip)")
    p.add_argument("--cache-dir", type=Path,
                   help="engine cache folder (default: the bundle's engines/)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT workspace limit")
    p.add_argument("--unknown-label", action="store_true",
                   help="label pixels beyond their cluster's novelty threshold 255 (unknown); "
                        "needs a model trained with novelty calibration")


def run(args: argparse.Namespace) -> int:
    from export.pipeline import export_bundle

    bundle = export_bundle(args.checkpoint, args.camera_size, args.network_size, args.out,
                           args.precision, samples=args.samples, num_frames=args.frames,
                           seed=args.seed, engine=args.engine, cache_dir=args.cache_dir,
                           workspace_mb=args.workspace_mb, unknown_label=args.unknown_label)
    parity = bundle.meta.validation["onnxruntime_cpu_vs_pytorch"]
    log.info("bundle %s ready: %d classes, camera %s, network %s, label agreement %.3f%%",
             bundle.path, bundle.meta.num_classes, bundle.meta.camera, bundle.meta.network,
             100 * parity["label_agreement"])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """``uwstego export``: the same command under the ``uwstego`` dispatcher."""
    p = subparsers.add_parser("export", help="export a trained model to a deploy bundle",
                              description=__doc__)
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export-trt", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return run(args)
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as exc:
        # Bad input and failed checks are one line naming the problem, not a traceback.
        log.error("%s", exc, exc_info=args.verbose)
        return 1


if __name__ == "__main__":
    sys.exit(main())
