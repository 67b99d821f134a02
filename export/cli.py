"""``export-trt`` (also ``uwstego export``): a trained model to a deploy bundle for one camera."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from uwstego.bundle import sign_bundle
from uwstego.cli import HelpFormatter, configure_logging, run_command
from uwstego.export.settings import ENGINE_MODES, ENGINE_PRECISIONS, ExportSettings
from uwstego.signing import load_private_key
from uwstego.trust import NAME_KEY, read_trust

log = logging.getLogger(__name__)


DESCRIPTION = ("Export a trained model to a deploy bundle for one camera size: a fused ONNX graph "
               "validated against PyTorch, and the TensorRT engine where TensorRT is installed.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = {f.name: f.default for f in dataclasses.fields(ExportSettings)}
    p.add_argument("checkpoint", type=Path, help="trained model file (model.pt) or its folder")
    p.add_argument("--camera-size", required=True, metavar="WxH",
                   help="camera frame size the graph takes, e.g. 1280x720")
    p.add_argument("--network-size", metavar="WxH",
                   help="ViT input size: multiples of the patch size with the camera's aspect "
                        "(default: short side at the training resolution)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--name", help="model name shown in reports and diagnostics (default: the "
                   "training run's folder name)")
    p.add_argument("--precision", choices=ENGINE_PRECISIONS, default=d["precision"],
                   help="TensorRT engine precision (model.onnx is always fp32; with --int8 the "
                        "int8 engine is built too)")
    p.add_argument("--samples", type=Path,
                   help="folder of images for the parity and precision checks (default: the "
                        "model's training frames, else synthetic frames)")
    p.add_argument("--frames", type=int, default=d["frames"], help="number of parity-check frames")
    p.add_argument("--int8", action="store_true",
                   help="also write model_int8.onnx: INT8 QDQ graph calibrated on sample frames "
                        "(ONNX Runtime CPU int8, TensorRT explicit INT8)")
    p.add_argument("--calibration-frames", type=int, default=d["calibration_frames"],
                   help="INT8 calibration frames (taken from the same source, disjoint from "
                        "the check frames)")
    p.add_argument("--strict-precision", action="store_true",
                   help="fail when a check is not informative (one class on its frames) or the "
                        "FP16/INT8 graph agrees with FP32 on under 99%% of pixels")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of the synthetic frames")
    p.add_argument("--engine", choices=ENGINE_MODES, default=d["engine"],
                   help="build the TensorRT engine: when TensorRT imports (auto), always "
                        "(require: fail without it) or never (skip)")
    p.add_argument("--cache-dir", type=Path,
                   help="engine cache folder (default: the bundle's engines/)")
    p.add_argument("--workspace-mb", type=int, default=d["workspace_mb"],
                   help="TensorRT workspace limit")
    p.add_argument("--unknown-label", action="store_true",
                   help="label pixels beyond their cluster's novelty threshold 255 (unknown); "
                        "needs a model trained with novelty calibration")
    p.add_argument("--no-cpu-graphs", dest="cpu_graphs", action="store_false",
                   help="leave out the ONNX Runtime CPU graphs (model_fused.onnx, "
                        "model_int8_dynamic.onnx; docs/deploy.md §11): a smaller bundle for "
                        "vehicles that run TensorRT only")
    p.add_argument("--sign-key", type=Path, metavar="KEY.pem",
                   help="Ed25519 private key (`uwstego keygen`): sign the bundle (bundle.sig), "
                        "for vehicles that load only bundles signed by a trusted key")


def settings_from_args(args: argparse.Namespace) -> ExportSettings:
    return ExportSettings(
        camera=args.camera_size, network=args.network_size, precision=args.precision,
        samples=args.samples, frames=args.frames, seed=args.seed, engine=args.engine,
        cache_dir=args.cache_dir, workspace_mb=args.workspace_mb, int8=args.int8,
        calibration_frames=args.calibration_frames, strict_precision=args.strict_precision,
        unknown_label=args.unknown_label, name=args.name, cpu_graphs=args.cpu_graphs)


def run(args: argparse.Namespace) -> int:
    from uwstego.export.pipeline import export_bundle

    if args.sign_key:  # a bad key fails now, not after minutes of export
        load_private_key(args.sign_key)
    bundle = export_bundle(args.checkpoint, args.out, settings_from_args(args))
    if args.sign_key:
        sign_bundle(bundle.path, args.sign_key)
    validation = bundle.meta.validation
    checks = "; ".join(
        f"{name} {doc['label_agreement_percent']} % ({doc['differing_pixels']} of "
        f"{doc['pixels']} pixels differ, {doc['classes_present']} classes present, "
        f"{doc['status']})"
        for name, doc in (("parity vs PyTorch", validation["onnxruntime_cpu_vs_pytorch"]),
                          ("FP16 vs FP32", validation.get("fp16_vs_fp32")),
                          ("INT8 vs FP32", validation.get("int8_vs_fp32")),
                          ("fused FP32 vs FP32", validation.get("fused_vs_fp32")),
                          ("dynamic INT8 vs FP32", validation.get("dynamic_int8_vs_fp32")))
        if doc)
    log.info("bundle %s ready: model %s, %d classes, camera %s, network %s; %s%s", bundle.path,
             bundle.meta.provenance[NAME_KEY], bundle.meta.num_classes, bundle.meta.camera,
             bundle.meta.network, checks,
             f"; {len(validation['warnings'])} PRECISION WARNING(S) above"
             if validation["warnings"] else "")
    trust = read_trust(bundle.meta.provenance)
    log.info("trust: %s", trust.describe())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """``uwstego export``: the same command under the ``uwstego`` dispatcher."""
    p = subparsers.add_parser("export", help="export a trained model to a deploy bundle",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export-trt", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
