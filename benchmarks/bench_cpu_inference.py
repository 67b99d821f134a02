"""CPU inference in one run on the same frames: the graph alone, each CPU graph, the product.

    python benchmarks/bench_cpu_inference.py [--quick] [--bundle B] [--rounds 3]

On a ViT-S/8 bundle (random weights, 640x480 camera, network 224x168, INT8 and fused graphs;
``--bundle`` takes another) and the frames of a synthetic dive, per round:

- ``plain session``: a bare ``onnxruntime.InferenceSession`` on ``model.onnx`` (ORT_ENABLE_ALL,
  one thread per core, nothing else running), per frame; the same for each CPU graph of the
  bundle (edge/cpu_graphs.py);
- the product: ``Segmenter`` inference alone, and ``uwstego replay`` (output bag, report and
  overlay video all on: its reader, writer and encoder threads share the CPU) at fp32 and int8,
  from ``latency_stages_ms.inference.p50`` of its summary;
- the eager PyTorch path of the official STEGO inference (featurizer, head, upsampled codes,
  cluster lookup: export/reference.py) on the first frames.

Ratios are taken within each round and the median over rounds is reported, so that load from
other machines on a shared host hits both sides of a ratio alike: graphs and Segmenters are
measured in turn, each on all frames in a row; a replay is compared with the plain session run
just before and just after it. Also: the CPU's flags, the
machine's FP32 GEMM rate (one large MatMul through ONNX Runtime, the same MLAS kernels) and the
rate the graph's weight GEMMs reach (ONNX Runtime profile). Targets (issue 23): product fp32 >=
the plain session (ratio >= 1.0 within noise), product int8 >= 2.0x the plain FP32 session on a
CPU with VNNI (1.5x without), graph GEMMs >= 80 % of the GEMM rate. The node's own overhead
over the Segmenter is ``bench_node.py``'s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from uwstego.backends.cpu_choice import cpu_facts
from uwstego.bundle import Bundle, load_bundle
from uwstego.contract import GRAPH_ENHANCE, GRAPH_IMAGE
from uwstego.image_size import Size
from uwstego.replay.loop import replay
from uwstego.replay.settings import ReplaySettings
from uwstego.sample_frames import host_stage
from uwstego.segmenter import Segmenter

from timing import emit

CAMERA, NETWORK = Size(640, 480), Size(224, 168)
INT8_TARGET = {True: 2.0, False: 1.5}  # with / without VNNI
GEMM_TARGET = 0.8
log = logging.getLogger("bench_cpu_inference")


def export_measured_bundle(out: Path, backbone: str, camera: Size, network: Size) -> Path:
    """The issue's bundle: random weights, 9 classes that split on the frames, INT8 + fused."""
    from tests.support.tiny_export import make_tiny_model
    from uwstego.export.pipeline import export_bundle
    from uwstego.export.settings import ExportSettings
    from uwstego.training.artifact import save_trained_model

    # Kept beside the bundle: the eager PyTorch path loads it from the bundle's provenance.
    model = save_trained_model(out.parent / "model" / "model.pt",
                               make_tiny_model(seed=0, k=9, backbone=backbone))
    export_bundle(model, out, ExportSettings(camera=camera, network=network, frames=4,
                                             int8=True, engine="skip", name=backbone))
    return out


def dive_frames(folder: Path, count: int, camera: Size) -> list[np.ndarray]:
    from uwstego.training.synth import DiveSettings
    from uwstego.training.synth.writer import write_dive

    write_dive(DiveSettings(seed=7, frames=count, width=camera.width, height=camera.height,
                            segment_frames=max(1, count // 3)), folder, save_range=False)
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
            for p in sorted((folder / "images").glob("*.png"))]


def session(path: Path, threads: int, profile: bool = False) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = profile
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def per_frame(run: Callable[[Any], float], items: Sequence[Any]) -> float:
    """Median ms per item of ``run`` (which returns its own ms), after one warm-up item."""
    run(items[0])
    return float(np.median([run(item) for item in items]))


def in_turn(runs: dict[str, Callable[[int], float]], count: int) -> dict[str, float]:
    """Median ms of each run over frames ``0..count-1``, one run after the other, each on all
    frames in a row (after one warm-up frame): ONNX Runtime's workers spin for a while after a
    run, and a run that follows another session's run would pay for that spin."""
    return {name: per_frame(run, range(count)) for name, run in runs.items()}


def timed_session(sess: Any) -> Callable[[tuple[np.ndarray, np.ndarray]], float]:
    import time

    def run(staged: tuple[np.ndarray, np.ndarray]) -> float:
        feeds = {GRAPH_IMAGE: staged[0][None], GRAPH_ENHANCE: staged[1][None].astype(np.float32)}
        t0 = time.perf_counter()
        sess.run(None, feeds)
        return (time.perf_counter() - t0) * 1e3
    return run


def replay_inference_ms(bundle: Path, images: Path, precision: str, threads: int,
                        work: Path) -> float:
    shutil.rmtree(work, ignore_errors=True)
    settings = ReplaySettings(backend="onnxruntime", precision=precision, threads=threads,
                              progress=False, fps=10.0)
    result = replay(images, bundle, settings, out_bag=work / "out", report_dir=work / "report")
    stages = result.summary.to_dict()["models"][0]["figures"]["latency_stages_ms"]
    return float(stages["inference"]["p50"])


def gemm_rate(threads: int, size: int = 2048) -> float:
    """GFLOP/s of one float32 ``size``-cube MatMul through ONNX Runtime (median of 5)."""
    import time

    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(helper.make_model(graph).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((size, size), dtype=np.float32) for n in "ab"}
    sess.run(None, feeds)
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        samples.append(time.perf_counter() - t0)
    return 2 * size ** 3 / float(np.median(samples)) / 1e9


def graph_gemm_rate(bundle: Bundle, staged: Sequence[tuple[np.ndarray, np.ndarray]],
                    threads: int) -> dict[str, float]:
    """FLOP of the graph's weight GEMMs (ViT Linears) over their kernel time in an ORT profile."""
    import onnx

    from uwstego.export.int8 import linear_nodes

    model = onnx.load(str(bundle.model_path))
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    patch = bundle.meta.patch_size
    tokens = (bundle.meta.network.width // patch) * (bundle.meta.network.height // patch) + 1
    names = set(linear_nodes(model))
    flop = sum(2 * tokens * int(np.prod(weights[n.input[1]]))
               for n in model.graph.node if n.name in names)
    sess = session(bundle.model_path, threads, profile=True)
    run = timed_session(sess)
    for item in staged:
        run(item)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    os.remove(f.name)
    # ORT fuses each Linear's MatMul + bias Add into one Gemm: its kernels are exactly these.
    kernel_us = [e["dur"] for e in events if e.get("cat") == "Node"
                 and e["name"].endswith("_kernel_time") and e["args"].get("op_name") == "Gemm"]
    seconds = sum(kernel_us) / 1e6 / len(staged)
    return {"gflop_per_frame": flop / 1e9, "gemm_ms_per_frame": seconds * 1e3,
            "gemm_gflops": flop / seconds / 1e9 if seconds else 0.0}


def eager_pytorch_ms(bundle_dir: Path, threads: int,
                     staged: Sequence[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """The official-STEGO-equivalent eager path (export/reference.py) on the bundle's model."""
    try:
        import torch

        from uwstego.export.reference import ReferenceSegmenter
        from uwstego.training.artifact import load_trained_model
    except ImportError:
        return None
    checkpoint = load_bundle(bundle_dir).meta.provenance.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        return None
    import time

    torch.set_num_threads(threads or os.cpu_count() or 1)
    model = load_trained_model(Path(checkpoint))
    backbone, head = model.build_modules()
    reference = ReferenceSegmenter(backbone, head, model.centroids, load_bundle(bundle_dir)
                                   .meta.network, model.cluster_classes)

    def run(item: tuple[np.ndarray, np.ndarray]) -> float:
        t0 = time.perf_counter()
        reference.segment(*item)
        return (time.perf_counter() - t0) * 1e3
    return per_frame(run, staged[:4])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="a bundle with model_int8.onnx (default: "
                        "export the ViT-S/8 one; needs the export extra)")
    parser.add_argument("--frames", type=int, default=12, help="frames per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    parser.add_argument("--quick", action="store_true", help="ViT-S/16, few frames, 1 round")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    backbone = "dino_vits16" if args.quick else "dino_vits8"
    frames_n, rounds = (6, 1) if args.quick else (args.frames, args.rounds)
    threads = args.threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        work = Path(tmp)
        bundle_dir = args.bundle or export_measured_bundle(work / "bundle", backbone, CAMERA,
                                                           NETWORK)
        bundle = load_bundle(bundle_dir)
        frames = dive_frames(work / "dive", frames_n, bundle.meta.camera)
        staged = host_stage(frames, bundle.meta.enhancement)
        graphs = bundle.cpu_graphs("fp32") + bundle.cpu_graphs("int8")
        sessions = {f"session {g.name} {g.precision}": timed_session(
            session(bundle.path / g.file, threads)) for g in graphs}
        segmenters = {p: Segmenter(bundle, backend="onnxruntime", precision=p, threads=threads)
                      for p in ("fp32", "int8")}
        plain = "session plain fp32"
        rows: list[dict[str, float]] = []
        for _ in range(rounds):
            # Every graph and the Segmenters in turn, round after round: load changes hit them
            # alike.
            for seg in segmenters.values():
                seg.reset()
            runs: dict[str, Callable[[int], float]] = {
                name: (lambda i, r=run: r(staged[i])) for name, run in sessions.items()}
            runs.update({f"segmenter {p}": (lambda i, s=seg: s.segment(frames[i])
                                            .timings_ms["inference"])
                         for p, seg in segmenters.items()})
            row = in_turn(runs, len(frames))
            # A replay cannot be interleaved: the plain session just before and just after
            # it is its reference.
            before = per_frame(sessions[plain], staged)
            for p in segmenters:
                row[f"replay {p}"] = replay_inference_ms(bundle.path, work / "dive" / "images",
                                                         p, threads, work / f"replay_{p}")
                after = per_frame(sessions[plain], staged)
                row[f"plain session around replay {p}"] = (before + after) / 2
                before = after
            rows.append(row)
        ratios = {
            "product_fp32_vs_plain_session": [r["plain session around replay fp32"]
                                              / r["replay fp32"] for r in rows],
            "segmenter_fp32_vs_plain_session": [r[plain] / r["segmenter fp32"] for r in rows],
            "product_int8_vs_plain_fp32_session": [r["plain session around replay int8"]
                                                   / r["replay int8"] for r in rows],
            "segmenter_int8_vs_plain_fp32_session": [r[plain] / r["segmenter int8"]
                                                     for r in rows],
            **{f"{name} vs plain fp32": [r[plain] / r[name] for r in rows]
               for name in sessions if name != plain},
        }
        facts = cpu_facts()
        vnni = any(f in facts.flags for f in ("avx512_vnni", "avx_vnni", "asimddp"))
        rate = gemm_rate(threads)
        gemm = graph_gemm_rate(bundle, staged, threads)
        gemm["gemm_share_of_graph"] = gemm["gemm_ms_per_frame"] / float(
            np.median([r[plain] for r in rows]))
        eager = eager_pytorch_ms(bundle.path, threads, staged)
        result: dict[str, Any] = {
            "note": "random weights: speed does not depend on them; agreement figures are the "
                    "bundle's validation (classes present listed there)",
            "cpu": facts.describe(), "vnni": vnni, "threads": threads,
            "backbone": bundle.meta.backbone, "camera": str(bundle.meta.camera),
            "network": str(bundle.meta.network), "frames_per_round": len(frames),
            "rounds": rounds,
            "median_ms": {k: float(np.median([r[k] for r in rows])) for k in rows[0]},
            "ratios": {k: float(np.median(v)) for k, v in ratios.items()},
            "chosen_graphs": {p: s.describe()["graph_choice"] for p, s in segmenters.items()},
            "gemm_rate_gflops": rate,
            "graph_gemms": {**gemm, "fraction_of_gemm_rate": gemm["gemm_gflops"] / rate},
            "eager_pytorch_ms": eager,
            "eager_pytorch_vs_plain_session": (None if eager is None else eager / float(
                np.median([r[plain] for r in rows]))),
            "validation": {k: {"agreement_percent": v.get("label_agreement_percent"),
                               "classes_present": v.get("classes_present"),
                               "status": v.get("status")}
                           for k, v in bundle.meta.validation.items() if isinstance(v, dict)},
            "targets": {"product_fp32_vs_plain_session": 1.0,
                        "product_int8_vs_plain_fp32_session": INT8_TARGET[vnni],
                        "fraction_of_gemm_rate": GEMM_TARGET},
        }
        for seg in segmenters.values():
            seg.close()
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
