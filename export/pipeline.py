"""``export-trt`` as a library call: trained model -> checked fused ONNX -> bundle -> engine.

Everything that can fail is checked before the bundle is written: the output folder, the model
file, the sizes, the ONNX checker, the TensorRT 8.6 op rules, and ONNX Runtime against PyTorch
on frames where the model's classes split (its training frames by default, export/frames.py).
With an FP16 engine the graph is also run at FP16 on the CPU (export/fp16.py), and ``int8``
adds a calibrated INT8 QDQ graph (export/int8.py); both are compared with the FP32 graph.

Every agreement is stored with the classes present on its frames (edge/agreement.py). A check
that is not informative (one class) or a reduced-precision graph below its threshold does not
stop the export by default: the FP32 graph's numerics are still proven by its continuous
confidence check against the eager module, the vehicle may still run FP32, and the demo's
random-weight models must export. The export then warns loudly and the bundle's validation says
so; ``strict_precision`` (``--strict-precision``) turns every such warning into a refusal
before anything is written. The bundle is then written atomically
(:func:`uwstego.bundle.write_bundle`). Where TensorRT is importable the engine is built into the
bundle's cache and checked against ONNX Runtime; elsewhere the log says that the target builds
it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from uwstego import __version__
from uwstego.agreement import PASSED
from uwstego.bundle import (
    BUNDLE_FILE,
    INT8_MODEL_FILE,
    MODEL_FILE,
    Bundle,
    BundleMeta,
    sha256_file,
    write_bundle,
)
from uwstego.classes import MAX_CLASSES
from uwstego.cpu_graphs import DYNAMIC_INT8_MODEL_FILE, FUSED_MODEL_FILE
from uwstego.errors import UwstegoError
from uwstego.export.fp16 import FP32_OPS, to_fp16
from uwstego.export.frames import validation_frames
from uwstego.export.fused import FusedSegmenter, check_network_size
from uwstego.export.fusions import METHOD as FUSED_METHOD
from uwstego.export.fusions import fuse_transformer
from uwstego.export.graph_settings import record_settings
from uwstego.export.int8 import DYNAMIC_METHOD as DYNAMIC_INT8_METHOD
from uwstego.export.int8 import METHOD as INT8_METHOD
from uwstego.export.int8 import quantize_dynamic_int8, quantize_int8
from uwstego.export.onnx_export import OPSET, export_onnx
from uwstego.export.opcheck import check_graph
from uwstego.export.reference import ReferenceSegmenter
from uwstego.export.settings import ExportSettings
from uwstego.export.validate import ParityReport, PrecisionReport, check_parity, compare_graphs
from uwstego.image_size import Size
from uwstego.sample_frames import host_stage
from uwstego.training.artifact import MODEL_FILE as MODEL_FILE_NAME
from uwstego.training.artifact import ModelFileError, TrainedModel, load_trained_model
from uwstego.training.backbones import IMAGENET_MEAN, IMAGENET_STD
from uwstego.training.trust import model_trust
from uwstego.trt import missing_packages
from uwstego.trust import NAME_KEY, TRUST_KEY, ModelTrust

log = logging.getLogger(__name__)

# Labels of a reduced-precision graph that agree with the FP32 graph on fewer pixels than this
# are reported loudly. FP16 (11-bit mantissa) and INT8 only flip pixels where the two best
# centroid scores nearly tie, i.e. along class boundaries; a one-pixel band along every
# boundary of a 640x480 frame with a few dozen regions is well under 1 % of its pixels, so 99 %
# passes honest rounding and still catches a layer that overflows or saturates (a decomposed
# FP16 LayerNorm drops a ViT to a fraction of its accuracy).
MIN_REDUCED_AGREEMENT = 0.99
FP16_METHOD = ("onnxruntime CPU on an FP16 copy of the graph (onnxruntime.transformers.float16,"
               f" graph I/O kept); kept in FP32: {', '.join(FP32_OPS)}")


class ExportError(UwstegoError, ValueError):
    """The export cannot go ahead; the message names the input at fault."""


def _nearest_multiple(value: float, step: int) -> int:
    return max(step, round(value / step) * step)


def suggest_network_size(camera: Size, width: int, patch: int) -> Size:
    """A network size with ``width`` (rounded to the patch) and the camera's aspect."""
    w = _nearest_multiple(width, patch)
    return Size(w, _nearest_multiple(w * camera.height / camera.width, patch))


def default_network_size(camera: Size, short_side: int, patch: int) -> Size:
    """Aspect kept, short side about ``short_side`` (the training resolution), patch multiples."""
    if camera.width >= camera.height:
        h = _nearest_multiple(short_side, patch)
        return Size(_nearest_multiple(h * camera.width / camera.height, patch), h)
    w = _nearest_multiple(short_side, patch)
    return Size(w, _nearest_multiple(w * camera.height / camera.width, patch))


def check_sizes(camera: Size, network: Size, patch: int) -> None:
    """Network size: a multiple of the patch, and the camera's aspect to within one patch."""
    hint = suggest_network_size(camera, network.width, patch)
    try:
        check_network_size(network, patch)
    except ValueError as exc:
        raise ExportError(f"{exc}; e.g. --network-size {hint}") from None
    exact_h = network.width * camera.height / camera.width
    if abs(network.height - exact_h) >= patch:
        raise ExportError(f"network size {network} does not keep the camera aspect of {camera} "
                          f"(height should be about {exact_h:.1f}); e.g. --network-size {hint}")


def check_output_dir(out: Path) -> None:
    """Refuse early what :func:`write_bundle` would refuse late: a file, a foreign folder, or a
    place this process cannot write (probed by writing, so it holds for root too)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / BUNDLE_FILE).exists():
        raise ExportError(f"refusing to overwrite {out}: a non-empty folder that is not a bundle")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"cannot create output folder {out}: {ancestor} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".uwstego-write-test.", dir=ancestor)
    except OSError as exc:
        raise ExportError(f"output folder {out} is not writable ({exc.strerror}: {ancestor})"
                          ) from exc
    os.rmdir(probe)


def _load_model(checkpoint: Path) -> TrainedModel:
    if not checkpoint.exists():
        raise ExportError(f"checkpoint {checkpoint} does not exist")
    try:
        model = load_trained_model(checkpoint)
    except (ModelFileError, FileNotFoundError, ValueError) as exc:
        raise ExportError(f"cannot export {checkpoint}: {exc}") from exc
    if not 1 <= model.num_clusters <= MAX_CLASSES:
        raise ExportError(f"{checkpoint}: {model.num_clusters} clusters, but labels are uint8: "
                          f"at most {MAX_CLASSES}")
    return model


def model_name(checkpoint: Path, settings: ExportSettings) -> str:
    """``settings.name``, else the training run's folder name (``runs/reef/model.pt``: reef),
    else the file's stem."""
    if settings.name:
        return settings.name
    path = checkpoint.resolve()
    if path.is_dir():
        return path.name
    return path.parent.name if path.name == MODEL_FILE_NAME and path.parent.name else path.stem


def _provenance(checkpoint: Path, model: TrainedModel, settings: ExportSettings,
                trust: ModelTrust) -> dict[str, Any]:
    file = checkpoint / MODEL_FILE_NAME if checkpoint.is_dir() else checkpoint
    return {
        NAME_KEY: model_name(checkpoint, settings),
        TRUST_KEY: trust.to_dict(),
        "export_settings": settings.to_dict(),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(file),
        "centroids_sha256": hashlib.sha256(model.centroids.tobytes()).hexdigest(),
        "num_clusters": model.num_clusters,
        "training_resolution": model.resolution,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "confidence": "max cosine times rho in (0, 1], rho = 1 inside regions "
                      "(see export/fused.py)",
        "exporter": f"torch.onnx TorchScript (dynamo=False), opset {OPSET}",
        "versions": {"uwstego": __version__, "torch": torch.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training": dict(model.provenance),
    }


def split_frames(frames: Sequence[np.ndarray], validate: int, calibrate: int
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(validation, calibration)``: disjoint and both spread over ``frames`` (calibrating on
    the frames that judge the result would flatter it); with a single frame, both are it."""
    if not calibrate:
        return list(frames[:validate]), []
    if len(frames) < 2:
        log.warning("only %d sample frame: INT8 is calibrated on the frame it is validated on",
                    len(frames))
        return list(frames), list(frames)
    n, c = len(frames), min(calibrate, len(frames) - 1)
    is_calibration = [(i + 1) * c // n > i * c // n for i in range(n)]
    return ([f for f, cal in zip(frames, is_calibration, strict=True) if not cal][:validate],
            [f for f, cal in zip(frames, is_calibration, strict=True) if cal])


def export_bundle(checkpoint: str | Path, out: str | Path, settings: ExportSettings) -> Bundle:
    """Write a validated deploy bundle for one camera size; build the engine where possible.

    ``settings`` says how (export/settings.py). Calibrated models get the ``novelty`` output.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    camera, int8 = settings.camera, settings.int8
    check_output_dir(out)
    missing = missing_packages()
    if settings.engine == "require" and missing:
        raise ExportError(f"--engine require, but {', '.join(missing)} cannot be imported here")
    model = _load_model(checkpoint)
    trust = model_trust(model.provenance, model.backbone, model.num_clusters)
    if settings.unknown_label and model.calibration is None:
        raise ExportError(f"{checkpoint} has no novelty calibration (trained before it existed "
                          "or imported): it cannot mark unknown pixels; retrain, or export "
                          "without the unknown label")
    if model.calibration is None:
        log.info("%s has no novelty calibration: the bundle has no novelty output", checkpoint)
    try:
        backbone, head = model.build_modules()
    except (RuntimeError, ValueError) as exc:  # weights that do not fit the named architecture
        raise ExportError(f"cannot rebuild the network stored in {checkpoint}: {exc}") from exc
    patch = backbone.patch_size
    network = settings.network or default_network_size(camera, model.resolution, patch)
    check_sizes(camera, network, patch)
    log.info("exporting %s (%s, %d clusters) for camera %s at network size %s", checkpoint,
             model.backbone, model.num_clusters, camera, network)

    fused = FusedSegmenter(backbone, head, model.centroids, camera, network,
                           calibration=model.calibration,
                           mark_unknown=settings.unknown_label,
                           cluster_classes=model.cluster_classes)
    graph = export_onnx(fused)
    check_graph(graph, camera)
    calibration_frames = settings.calibration_frames if int8 else 0
    frames, source = validation_frames(model, camera, settings.frames + calibration_frames,
                                       settings.samples, settings.seed)
    frames, calibration = split_frames(frames, settings.frames, calibration_frames)
    parity = check_parity(graph, fused, ReferenceSegmenter(backbone, head, model.centroids,
                                                           network, model.cluster_classes),
                          frames, model.enhancement, frame_source=source,
                          min_agreement=settings.min_agreement)
    validation: dict[str, Any] = {"onnxruntime_cpu_vs_pytorch": parity.to_dict()}
    warnings = [] if parity.status == PASSED else [
        f"FP32 parity is {parity.status}: {parity.labels.describe()}; pass --samples with "
        "frames where the model's classes split"]
    files = {MODEL_FILE: graph.SerializeToString()}
    if settings.precision == "fp16":
        fp16 = compare_graphs(graph, to_fp16(graph), frames, model.enhancement, "fp16",
                              FP16_METHOD, source, MIN_REDUCED_AGREEMENT)
        validation["fp16_vs_fp32"] = fp16.to_dict()
        warnings += _precision_warning(fp16, "FP16")
    # (file, validation key, graph, method), TensorRT's INT8 input first.
    graphs: list[tuple[str, str, onnx.ModelProto, str]] = []
    if int8:
        quantised = quantize_int8(graph, host_stage(calibration, model.enhancement))
        check_graph(quantised, camera)
        graphs.append((INT8_MODEL_FILE, "int8_vs_fp32", quantised, INT8_METHOD))
    if settings.cpu_graphs:
        graphs.append((FUSED_MODEL_FILE, "fused_vs_fp32",
                       fuse_transformer(graph, backbone.config.num_heads, backbone.embed_dim),
                       FUSED_METHOD))
        if int8:
            graphs.append((DYNAMIC_INT8_MODEL_FILE, "dynamic_int8_vs_fp32",
                           quantize_dynamic_int8(graph), DYNAMIC_INT8_METHOD))
    for file, key, candidate, method in graphs:
        label = key.removesuffix("_vs_fp32").replace("_", " ")  # "int8", "dynamic int8"
        report = compare_graphs(graph, candidate, frames, model.enhancement, label, method,
                                source, MIN_REDUCED_AGREEMENT)
        validation[key] = report.to_dict()
        if key == "int8_vs_fp32":
            validation[key]["calibration_frames"] = len(calibration)
        warnings += _precision_warning(report, file)
        files[file] = candidate.SerializeToString()
    for warning in warnings:
        log.warning("PRECISION WARNING: %s", warning)
    if warnings and settings.strict_precision:
        raise ExportError("--strict-precision: " + "; ".join(warnings) + "; nothing written")
    validation["warnings"] = warnings

    meta = BundleMeta(camera=camera, network=network, patch_size=patch, classes=model.classes,
                      enhancement=model.enhancement, backbone=model.backbone,
                      provenance=_provenance(checkpoint, model, settings, trust),
                      validation=validation, opset=OPSET, novelty=model.calibration,
                      unknown_label=settings.unknown_label)
    bundle = write_bundle(out, meta, record_settings(files, meta))
    log.info("wrote bundle %s (model.onnx sha256 %s...)", out, bundle.model_sha256[:12])
    if trust.random:
        log.warning("WARNING: %s", trust.warning())
    if settings.engine == "skip":
        log.info("engine build skipped (--engine skip): the target builds it on first use")
    elif missing:
        log.info("TensorRT is not usable here (%s not importable). The bundle is complete and "
                 "validated; the engine will be built on the target (`uwstego build-engine %s` "
                 "or the node's first start)", ", ".join(missing), bundle.path)
    else:
        for engine_precision in (settings.precision, "int8") if int8 else (settings.precision,):
            _build_and_check_engine(bundle, engine_precision, settings.cache_dir,
                                    settings.workspace_mb, frames, parity)
    return bundle


def _precision_warning(report: PrecisionReport, graph: str) -> list[str]:
    if report.status == PASSED:
        return []
    return [f"the {graph} graph is {report.status} against FP32: {report.labels.describe()}"]


def _build_and_check_engine(bundle: Bundle, precision: str, cache_dir: str | Path | None,
                            workspace_mb: int, frames: Sequence[np.ndarray],
                            parity: ParityReport) -> None:
    from uwstego.trt.check import check_engine
    from uwstego.trt.engine import ensure_engine

    plan = ensure_engine(bundle, precision=precision, cache_dir=cache_dir,
                         workspace_bytes=workspace_mb << 20)
    report = check_engine(bundle, frames, precision=precision, cache_dir=cache_dir)
    log.info("engine %s vs ONNX Runtime: %s (export parity: %s), latency p50 %.2f ms p90 "
             "%.2f ms p99 %.2f ms", plan.name, report["labels"]["description"],
             parity.labels.describe(),
             report["latency_ms"]["p50"], report["latency_ms"]["p90"],
             report["latency_ms"]["p99"])
