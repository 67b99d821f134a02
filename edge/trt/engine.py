"""``ensure_engine``: the cached plan for this system, built first if missing, stale or forced.

The same code serves ``export-trt`` (workstation or Jetson), ``uwstego build-engine`` and the
node's first start. Needs ``tensorrt`` and ``pycuda`` (for the GPU's name and compute
capability), both imported inside the functions.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from uwstego.atomic import write_bytes_atomic
from uwstego.bundle import Bundle
from uwstego.contract import ENHANCE_SHAPE, GRAPH_ENHANCE, GRAPH_IMAGE, image_shape
from uwstego.trt.builder import PRECISIONS, build_plan
from uwstego.trt.cache import (
    EngineKey,
    find_engine,
    read_l4t_release,
    timing_cache_path,
    write_engine,
)

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30
DEVICE_INDEX = 0  # Jetsons have one GPU; workstations build for their first


def input_shapes(bundle: Bundle) -> dict[str, tuple[int, ...]]:
    return {GRAPH_IMAGE: image_shape(bundle.meta.camera), GRAPH_ENHANCE: ENHANCE_SHAPE}


def system_key(bundle: Bundle, precision: str, optimization_level: int | None = None
               ) -> EngineKey:
    """The :class:`EngineKey` of this machine for ``bundle``."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda.init()
    device = cuda.Device(DEVICE_INDEX)
    major, minor = device.compute_capability()
    return EngineKey(trt_version=trt.__version__, gpu_name=device.name(),
                     compute_capability=f"{major}.{minor}", l4t_release=read_l4t_release(),
                     precision=precision, onnx_sha256=bundle.graph_sha256(precision),
                     input_shapes=input_shapes(bundle), optimization_level=optimization_level)


def engine_cache_dir(bundle: Bundle, cache_dir: str | Path | None) -> Path:
    """``cache_dir`` if given (e.g. for a read-only bundle), else the bundle's ``engines/``."""
    return Path(cache_dir) if cache_dir is not None else bundle.engine_dir


def ensure_engine(bundle: Bundle, precision: str = "fp16", cache_dir: str | Path | None = None,
                  force: bool = False, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                  optimization_level: int | None = None) -> Path:
    """Path of a plan that fits this system and ``bundle``; builds it (minutes) when needed."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    bundle.graph_file(precision)  # a missing INT8 graph fails here, before any CUDA work
    key = system_key(bundle, precision, optimization_level)
    cache = engine_cache_dir(bundle, cache_dir)
    lookup = find_engine(cache, key)
    if lookup.plan is not None and not force:
        log.info("%s", lookup.reason)
        return lookup.plan
    log.warning("building a TensorRT engine for %s (takes minutes): %s", key.describe(),
                "rebuild forced" if force else lookup.reason)
    timing_file = timing_cache_path(cache, key)
    timing = timing_file.read_bytes() if timing_file.is_file() else b""
    started = time.perf_counter()
    plan_bytes, timing = build_plan(bundle.graph_path(precision), precision, workspace_bytes,
                                    timing, optimization_level)
    seconds = time.perf_counter() - started
    plan = write_engine(cache, key, plan_bytes, {
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "workspace_bytes": workspace_bytes,
        "bundle": str(bundle.path),
    })
    write_bytes_atomic(timing_file, timing)
    log.info("built %s in %.0f s (%.1f MB)", plan.name, seconds, len(plan_bytes) / 1e6)
    return plan
