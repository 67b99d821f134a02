"""Check a built engine against ONNX Runtime (CPU) on sample frames and time it (docs/deploy.md §9).

Run by ``export-trt`` after a build and by ``uwstego build-engine --check``; the result is
stored in the engine's sidecar so diagnostics can show it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.agreement import FAILED, AgreementCounter
from uwstego.bundle import Bundle
from uwstego.sample_frames import host_stage
from uwstego.trt.cache import update_sidecar

log = logging.getLogger(__name__)

# FP16 moves a few boundary pixels; below this the engine is reported as suspect.
WARN_AGREEMENT = 0.99


def latency_percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()),
            "runs": int(arr.size)}


def check_engine(bundle: Bundle, frames: Sequence[np.ndarray], precision: str = "fp16",
                 cache_dir: str | Path | None = None, repeats: int = 50,
                 warmup: int = 5) -> dict[str, Any]:
    """Label agreement and confidence error of the engine vs ORT CPU, and engine latency."""
    from uwstego.backends.onnxruntime import OnnxRuntimeBackend
    from uwstego.backends.tensorrt import TensorRTBackend

    engine = TensorRTBackend(bundle, precision=precision, cache_dir=cache_dir)
    try:
        reference = OnnxRuntimeBackend(bundle, device="cpu")
        pairs = host_stage(frames, bundle.meta.enhancement)
        counter = AgreementCounter()
        conf_max = conf_sum = 0.0
        novelty_max = None  # engine vs ORT novelty, for bundles with a novelty output
        for image, params in pairs:
            labels, confidence, novelty = engine.run_maps(image, params)
            ref_labels, ref_confidence, ref_novelty = reference.run_maps(image, params)
            if novelty is not None and ref_novelty is not None:
                novelty_max = max(novelty_max or 0.0, float(np.abs(novelty - ref_novelty).max()))
            counter.add(labels, ref_labels)
            diff = np.abs(confidence - ref_confidence)
            conf_max = max(conf_max, float(diff.max()))
            conf_sum += float(diff.sum())
        image, params = pairs[0]
        for _ in range(warmup):
            engine.run(image, params)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            engine.run(image, params)
            samples.append((time.perf_counter() - started) * 1e3)
        agreement = counter.result(WARN_AGREEMENT)
        report = {
            "reference": "onnxruntime CPU",
            "frames": len(pairs),
            "label_agreement": agreement.fraction,
            "labels": {**agreement.to_dict(), "description": agreement.describe()},
            "confidence_max_abs": conf_max,
            "confidence_mean_abs": conf_sum / counter.pixels,
            **({} if novelty_max is None else {"novelty_max_abs": novelty_max}),
            "latency_ms": latency_percentiles(samples),
            "latency_note": "host-to-host: copies in, execute_async_v3, copies out",
        }
        update_sidecar(engine.plan, check=report)
    finally:
        engine.close()
    if agreement.status == FAILED:
        log.warning("engine vs ONNX Runtime: %s: check %s drift (polygraphy, docs/deploy.md §8) or "
                    "use --precision fp32", agreement.describe(), precision.upper())
    elif not agreement.informative:
        log.warning("engine vs ONNX Runtime: %s: use sample frames where the classes split",
                    agreement.describe())
    return report
