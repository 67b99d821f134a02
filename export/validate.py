"""Parity of the exported graph on ONNX Runtime (CPU) with the PyTorch reference, per frame.

Two comparisons on the same frames and enhancement parameters:

- **ONNX Runtime vs the reference** (:mod:`uwstego.export.reference`, the official unfused path):
label
  agreement, which must reach ``min_agreement`` (99.5 % in fp32) and comes with the classes the
  reference predicts on those frames (:mod:`uwstego.agreement`: on single-class frames the check is
  "not informative", never passed), and the confidence difference, which includes the
  documented approximation of the fused confidence (:mod:`uwstego.export.fused`);
- **ONNX Runtime vs the eager fused module**: the export's own numerical error, which must stay
  within float32 rounding (``max_graph_error``); anything larger is an exporter bug. Being a
  continuous figure, it checks the graph even where the labels are not informative.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from uwstego.agreement import FAILED, AgreementCounter, LabelAgreement, format_percent
from uwstego.contract import (
    GRAPH_CONFIDENCE,
    GRAPH_ENHANCE,
    GRAPH_IMAGE,
    GRAPH_LABELS,
    UNKNOWN_LABEL,
)
from uwstego.enhance import EnhanceSettings
from uwstego.errors import UwstegoError
from uwstego.export.fused import FusedSegmenter
from uwstego.export.reference import ReferenceSegmenter
from uwstego.export.settings import MIN_AGREEMENT
from uwstego.image_size import Size
from uwstego.novelty import NoveltyCalibration, novelty_map
from uwstego.sample_frames import host_stage, synthetic_frames

log = logging.getLogger(__name__)

MAX_GRAPH_ERROR = 1e-3


class ParityError(UwstegoError, ValueError):
    """The exported graph does not reproduce the PyTorch model closely enough."""


@dataclass(frozen=True)
class ParityReport:
    frames: int
    frame_source: str
    labels: LabelAgreement  # ORT vs reference
    worst_frame_agreement: float
    confidence_max_abs: float  # ORT vs reference (includes the fused-confidence approximation)
    confidence_mean_abs: float
    graph_label_agreement: float  # ORT vs eager fused module: export error only
    graph_confidence_max_abs: float
    # ORT novelty vs uwstego.novelty.novelty_map of ORT's labels and confidence; None: no novelty
    graph_novelty_max_abs: float | None = None

    @property
    def label_agreement(self) -> float:
        return self.labels.fraction

    @property
    def status(self) -> str:
        return self.labels.status

    def to_dict(self) -> dict[str, Any]:
        return {**_flat(self), "min_agreement": self.labels.threshold}


def _flat(report: ParityReport | PrecisionReport) -> dict[str, Any]:
    """The report's fields with its :class:`LabelAgreement` spread in (JSON for bundle.json)."""
    doc = {k: v for k, v in asdict(report).items() if k != "labels"}
    doc.update(report.labels.to_dict())
    return doc


def sample_frames(camera: Size, count: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """``count`` consecutive frames of a synthetic dive (:mod:`uwstego.training.synth`) at the
    camera
    size, or seeded synthetic fields where the dive generator is absent or cannot render that
    size; with a description of the source."""
    try:
        from uwstego.training.synth.sequence import generate_dive
        from uwstego.training.synth.settings import DiveSettings

        settings = DiveSettings(seed=seed, frames=count, width=camera.width,
                                height=camera.height)
    except (ImportError, ValueError) as exc:
        log.debug("synthetic dive unavailable (%s): using synthetic colour fields", exc)
        return synthetic_frames(camera, count, seed), f"synthetic fields (seed {seed})"
    return ([frame.rgb for frame in generate_dive(settings)],
            f"synthetic dive (uwstego.training.synth, seed {seed})")


def ort_session(model: onnx.ModelProto | bytes | Path, threads: int = 0):
    """A CPU ONNX Runtime session with all graph optimisations (``threads=0``: all cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    return ort.InferenceSession(model.read_bytes() if isinstance(model, Path) else model,
                                sess_options=opts, providers=["CPUExecutionProvider"])


def check_parity(model: onnx.ModelProto, fused: FusedSegmenter, reference: ReferenceSegmenter,
                 frames: Sequence[np.ndarray], settings: EnhanceSettings,
                 frame_source: str = "synthetic", min_agreement: float = MIN_AGREEMENT,
                 max_graph_error: float = MAX_GRAPH_ERROR) -> ParityReport:
    """Compare ORT with the reference and the eager fused module; raise :class:`ParityError`."""
    session = ort_session(model)
    counter = AgreementCounter()
    graph_agree = 0
    conf_max = conf_sum = graph_max = 0.0
    novelty_max = 0.0 if fused.calibrated else None
    for image, params in host_stage(frames, settings):
        outputs = session.run(None, {GRAPH_IMAGE: image[None],
                                     GRAPH_ENHANCE: params[None].astype(np.float32)})
        labels, confidence = outputs[0][0], outputs[1][0].astype(np.float32)
        ref_labels, ref_conf = reference.segment(image, params)
        with torch.inference_mode():
            eager = fused(torch.from_numpy(image)[None], torch.from_numpy(params)[None])
        eager_labels, eager_conf = eager[0], eager[1]
        if novelty_max is not None:
            novelty_max = max(novelty_max, _novelty_error(outputs[2][0], confidence, labels,
                                                          fused.calibration))
        if fused.mark_unknown:  # unknown pixels are checked against the eager module only
            ref_labels = np.where(labels == UNKNOWN_LABEL, labels, ref_labels)
        counter.add(labels, ref_labels)
        graph_agree += int((labels == eager_labels[0].numpy()).sum())
        diff = np.abs(confidence - ref_conf)
        conf_max = max(conf_max, float(diff.max()))
        conf_sum += float(diff.sum())
        graph_max = max(graph_max, float(np.abs(confidence - eager_conf[0].numpy()).max()))
    agreement = counter.result(min_agreement)
    report = ParityReport(
        frames=len(frames), frame_source=frame_source, labels=agreement,
        worst_frame_agreement=counter.worst_frame[0] / counter.worst_frame[1],
        confidence_max_abs=conf_max, confidence_mean_abs=conf_sum / counter.pixels,
        graph_label_agreement=graph_agree / counter.pixels, graph_confidence_max_abs=graph_max,
        graph_novelty_max_abs=novelty_max)
    log.info("parity on %d frames (%s), ONNX Runtime vs PyTorch reference: %s; worst frame "
             "%s %%; confidence error max %.3g mean %.3g; graph vs eager: labels %s %%, "
             "confidence max %.3g", report.frames, frame_source, agreement.describe(),
             format_percent(*counter.worst_frame), conf_max,
             report.confidence_mean_abs, format_percent(graph_agree, counter.pixels), graph_max)
    if agreement.status == FAILED:
        raise ParityError(f"ONNX Runtime agrees with the PyTorch reference on only "
                          f"{agreement.percent()}% of pixels (need "
                          f"{100 * min_agreement:g}%): the export is wrong; nothing written")
    if novelty_max is not None and novelty_max > max_graph_error:
        raise ParityError(f"ONNX Runtime novelty differs from uwstego.novelty.novelty_map by "
                          f"{novelty_max:.3g} (> {max_graph_error:g}): exporter bug; nothing "
                          "written")
    if graph_max > max_graph_error:
        raise ParityError(f"ONNX Runtime confidence differs from the eager fused module by "
                          f"{graph_max:.3g} (> {max_graph_error:g}): exporter bug; nothing "
                          "written")
    return report


@dataclass(frozen=True)
class PrecisionReport:
    """A reduced-precision graph against the FP32 graph on ONNX Runtime CPU, same frames."""

    precision: str
    frames: int
    frame_source: str
    labels: LabelAgreement  # candidate vs FP32 graph
    confidence_max_abs: float
    confidence_mean_abs: float
    method: str

    @property
    def status(self) -> str:
        return self.labels.status

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)


def _novelty_error(novelty: np.ndarray, confidence: np.ndarray, labels: np.ndarray,
                   calibration: NoveltyCalibration) -> float:
    """Largest difference between the graph's novelty and :func:`uwstego.novelty.novelty_map` of
    the graph's own labels and confidence. Against the eager module the novelty would differ
    wherever a tie flips the argmax (another cluster's knots) and by the knots' slope (up to
    1 / MIN_KNOT_GAP) times the confidence's rounding error; this checks the op sequence.
    Pixels labelled unknown carry no cluster id: the label check covers them."""
    known = labels != UNKNOWN_LABEL
    if not known.any():
        return 0.0
    expected = novelty_map(confidence[known], labels[known], calibration)
    return float(np.abs(novelty[known].astype(np.float32) - expected).max())


def compare_graphs(reference: onnx.ModelProto, candidate: onnx.ModelProto,
                   frames: Sequence[np.ndarray], settings: EnhanceSettings, precision: str,
                   method: str, frame_source: str, threshold: float) -> PrecisionReport:
    """Labels and confidence of ``candidate`` vs the FP32 ``reference`` graph; never raises on
    disagreement (the caller decides: warn or, with ``--strict-precision``, fail)."""
    sessions = ort_session(reference), ort_session(candidate)
    counter = AgreementCounter()
    conf_max = conf_sum = 0.0
    for image, params in host_stage(frames, settings):
        feeds = {GRAPH_IMAGE: image[None], GRAPH_ENHANCE: params[None].astype(np.float32)}
        (ref_labels, ref_conf), (labels, conf) = (s.run([GRAPH_LABELS, GRAPH_CONFIDENCE], feeds)
                                                  for s in sessions)
        counter.add(labels[0], ref_labels[0])
        diff = np.abs(conf[0].astype(np.float32) - ref_conf[0].astype(np.float32))
        conf_max = max(conf_max, float(diff.max()))
        conf_sum += float(diff.sum())
    report = PrecisionReport(precision=precision, frames=len(frames), frame_source=frame_source,
                             labels=counter.result(threshold), confidence_max_abs=conf_max,
                             confidence_mean_abs=conf_sum / counter.pixels, method=method)
    log.info("%s vs FP32 graph on %d frames (%s): %s; confidence error max %.3g mean %.3g",
             precision, report.frames, frame_source, report.labels.describe(), conf_max,
             report.confidence_mean_abs)
    return report
