"""ONNX Runtime CPU: the FP32 fused graph vs its INT8 QDQ graph, and the FP16 check, one run.

Per backbone row, on the same host-staged frames:

- latency of the FP32 and the INT8 graph (median of interleaved rounds, so load from other
  processes hits both alike) and their ratio (target: INT8 at least 1.5x faster);
- label agreement of INT8 and of FP16 (LayerNorm/Softmax/reductions in FP32, export/fp16.py)
  with FP32, each with the classes present and the label entropy of the frames
  (edge/agreement.py: a one-class check reads "not informative", never "passed").

The INT8 graph is the one ``export-trt --int8`` writes (export/int8.py), calibrated on frames
disjoint from the measured ones. Random backbone weights (no download needed): the cost does
not depend on them, but the agreement does, so the centroids are k-means centroids of the
model's own codes on the calibration frames, and the classes split on the measured frames as
they do for a trained model. Agreements on trained weights are the export's own figures (its
bundle's validation).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_export import interleaved

from uwstego.contract import GRAPH_ENHANCE, GRAPH_IMAGE
from uwstego.enhance import EnhanceSettings
from uwstego.export.fp16 import to_fp16
from uwstego.export.fused import FusedSegmenter, apply_params_torch
from uwstego.export.int8 import METHOD as INT8_METHOD
from uwstego.export.int8 import quantize_int8
from uwstego.export.onnx_export import export_onnx
from uwstego.export.pipeline import (
    FP16_METHOD,
    MIN_REDUCED_AGREEMENT,
    default_network_size,
    split_frames,
)
from uwstego.export.validate import compare_graphs, ort_session, sample_frames
from uwstego.image_size import Size
from uwstego.sample_frames import host_stage
from uwstego.training.backbones import build_backbone
from uwstego.training.clusters import spherical_kmeans
from uwstego.training.head import HeadConfig, SegmentationHead

from timing import emit

SPEEDUP_TARGET = 1.5


def own_centroids(backbone, head, pairs, network: Size, k: int) -> np.ndarray:
    """k-means centroids of the model's codes on ``pairs``: classes that split on such frames."""
    fused = FusedSegmenter(backbone, head, np.eye(k, head.config.code_dim, dtype=np.float32),
                           network, network)
    codes = []
    with torch.inference_mode():
        for image, params in pairs:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
            x = apply_params_torch(x, torch.from_numpy(params)[None])
            x = torch.nn.functional.interpolate(x, size=(network.height, network.width),
                                                mode="bilinear", align_corners=False)
            x = x * fused.norm_scale + fused.norm_shift
            code = head(backbone(x, pos_embed=fused.pos_embed))[0]
            codes.append(code.flatten(1).T.numpy())
    return spherical_kmeans(np.concatenate(codes), k, seed=0)


def measure(backbone_name: str, camera: Size, short_side: int, clusters: int, frames: int,
            calibration_frames: int, repeats: int, threads: int) -> dict[str, Any]:
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name)
    network = default_network_size(camera, short_side, backbone.patch_size)
    head = SegmentationHead(HeadConfig(in_dim=backbone.embed_dim)).eval()
    settings = EnhanceSettings()
    everything, source = sample_frames(camera, frames + calibration_frames, seed=0)
    check, calibration = split_frames(everything, frames, calibration_frames)
    calib_pairs = host_stage(calibration, settings)
    centroids = own_centroids(backbone, head, calib_pairs, network, clusters)
    graph = export_onnx(FusedSegmenter(backbone, head, centroids, camera, network))
    int8 = quantize_int8(graph, calib_pairs)
    source = f"{source}; {len(calibration)} calibration frames, {len(check)} measured"
    int8_report = compare_graphs(graph, int8, check, settings, "int8", INT8_METHOD, source,
                                 MIN_REDUCED_AGREEMENT)
    fp16_report = compare_graphs(graph, to_fp16(graph), check, settings, "fp16", FP16_METHOD,
                                 source, MIN_REDUCED_AGREEMENT)
    sessions = {"fp32": ort_session(graph, threads), "int8": ort_session(int8, threads)}
    feeds = [{GRAPH_IMAGE: image[None], GRAPH_ENHANCE: params[None].astype(np.float32)}
             for image, params in host_stage(check, settings)]
    state = {"i": 0}

    def runner(session):
        def run() -> None:
            state["i"] = (state["i"] + 1) % len(feeds)
            session.run(None, feeds[state["i"]])
        return run

    times = interleaved({name: runner(s) for name, s in sessions.items()}, repeats)
    speedup = times["fp32"]["median_ms"] / times["int8"]["median_ms"]
    return {
        "backbone": backbone_name,
        "camera": str(camera),
        "network": str(network),
        "clusters": clusters,
        "onnxruntime_cpu_fp32": times["fp32"],
        "onnxruntime_cpu_int8": times["int8"],
        "int8_speedup": speedup,
        "int8_speedup_target": SPEEDUP_TARGET,
        "int8_speedup_met": speedup >= SPEEDUP_TARGET,
        "int8_vs_fp32": int8_report.to_dict(),
        "fp16_vs_fp32": fp16_report.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, ViT-S/8 only")
    parser.add_argument("--backbones", nargs="+", default=["dino_vits8", "dino_vits16"])
    parser.add_argument("--camera", default="320x240", help="camera size WxH")
    parser.add_argument("--short-side", type=int, default=168,
                        help="network short side (patch multiple nearest to it, camera aspect)")
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4, help="measured frames")
    parser.add_argument("--calibration-frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, help="timed rounds (default 10, quick 4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # random-weight and quantiser notices: noise here
    torch.set_num_threads(args.threads)
    backbones = args.backbones[:1] if args.quick else args.backbones
    repeats = args.repeats or (4 if args.quick else 10)
    camera = Size.parse(args.camera)
    rows = {}
    for name in backbones:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        try:
            rows[name] = measure(name, camera, args.short_side, args.clusters, args.frames,
                                 args.calibration_frames, repeats, args.threads)
        except (RuntimeError, ValueError) as exc:  # one failed row must not lose the others
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"}
    emit({
        "benchmark": "precision",
        "note": "ONNX Runtime CPU, FP32 fused graph vs the INT8 QDQ graph of export-trt --int8, "
                f"same frames, interleaved rounds, {args.threads} threads; random backbone "
                "weights with k-means centroids of the model's own codes; agreements vs FP32 "
                "with classes present and label entropy of the measured frames",
        "cpu_flags": sorted(cpu_flags()),
        "threads": args.threads,
        "rows": rows,
    })


def cpu_flags() -> set[str]:
    """The SIMD flags that decide ONNX Runtime's integer kernels (VNNI makes INT8 fast)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    return {f for f in flags if f.startswith(("avx", "amx", "asimd", "sve")) or "vnni" in f}


if __name__ == "__main__":
    main()
