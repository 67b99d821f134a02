"""Inference backends for the fused graph, behind one small interface and a registry.

Every backend takes the host-stage output (``image`` uint8 HxWx3 at the bundle's camera size and
the five graph-stage ``enhance`` parameters) and returns ``(labels uint8 HxW, confidence float32
HxW)`` from ``run``, and those with the graph's ``novelty`` map (None for bundles without it)
from ``run_maps``. Backends are looked up by name and imported lazily, so the vehicle loads
TensorRT and pycuda only when it asks for them, and a machine without them still runs ONNX
Runtime.

``auto`` tries TensorRT, then ONNX Runtime on CUDA, then ONNX Runtime on the CPU, and logs why
each faster one was skipped.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from uwstego.backends.base import (
    CPU_GRAPH_CHOICES,
    PRECISIONS,
    Backend,
    BackendOptions,
    BackendUnavailable,
)
from uwstego.bundle import Bundle
from uwstego.errors import missing_package

log = logging.getLogger(__name__)

# The front door: callers import these from uwstego.backends, the backend modules from .base.
__all__ = ["AUTO_ORDER", "BACKEND_NAMES", "CPU_BACKEND", "CPU_GRAPH_CHOICES", "PRECISIONS",
           "Backend", "BackendChoice", "BackendOptions", "BackendUnavailable",
           "check_backend_name", "create_backend"]


def _onnxruntime_cpu(bundle: Bundle, options: BackendOptions) -> Backend:
    from uwstego.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(bundle, device="cpu", threads=options.threads,
                              precision=options.precision, cpu_graph=options.cpu_graph,
                              cache_dir=options.cache_dir)


def _onnxruntime_cuda(bundle: Bundle, options: BackendOptions) -> Backend:
    from uwstego.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(bundle, device="cuda", threads=options.threads,
                              precision=options.precision, cpu_graph=options.cpu_graph,
                              cache_dir=options.cache_dir)


def _tensorrt(bundle: Bundle, options: BackendOptions) -> Backend:
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(missing_package("the TensorRT backend", missing,
                                                 hint="JetPack ships tensorrt"))
    try:
        from uwstego.backends.tensorrt import TensorRTBackend
    except ImportError as exc:
        raise BackendUnavailable(f"uwstego.backends.tensorrt does not import: {exc}") from exc
    return TensorRTBackend(bundle, precision=options.precision, cache_dir=options.cache_dir)


CPU_BACKEND = "onnxruntime"  # the one that runs the graph on the CPU's cores
_REGISTRY: dict[str, Callable[[Bundle, BackendOptions], Backend]] = {
    "tensorrt": _tensorrt,
    "onnxruntime-cuda": _onnxruntime_cuda,
    CPU_BACKEND: _onnxruntime_cpu,
}
_SAID: set[str] = set()  # the choices already logged
# Fastest first: the order `auto` tries them in.
AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "onnxruntime")
BACKEND_NAMES = ("auto", *_REGISTRY)


@dataclass
class BackendChoice:
    """The backend that runs, and why `auto` passed over the ones before it."""

    backend: Backend
    requested: str
    skipped: dict[str, str] = field(default_factory=dict)


def check_backend_name(name: str) -> str:
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend {name!r}: expected one of {', '.join(BACKEND_NAMES)}")
    return name


def create_backend(name: str, bundle: Bundle,
                   options: BackendOptions | None = None) -> BackendChoice:
    """Build the named backend; ``auto`` falls back down :data:`AUTO_ORDER`.

    An explicitly named backend that cannot run raises :class:`BackendUnavailable` instead of
    silently running somewhere slower.
    """
    check_backend_name(name)
    options = options or BackendOptions()
    if name != "auto":
        return BackendChoice(_REGISTRY[name](bundle, options), requested=name)
    skipped: dict[str, str] = {}
    for candidate in AUTO_ORDER:
        try:
            backend = _REGISTRY[candidate](bundle, options)
        except BackendUnavailable as exc:
            skipped[candidate] = str(exc)
            log.debug("backend auto: %s unavailable (%s)", candidate, exc)
            continue
        except Exception as exc:  # a runtime that imports but fails to build must not stop auto
            if candidate == AUTO_ORDER[-1]:
                raise
            skipped[candidate] = f"{type(exc).__name__}: {exc}"
            log.warning("backend auto: %s failed (%s); trying the next one", candidate,
                        skipped[candidate])
            continue
        said = f"backend auto picked {candidate}" + (
            f" (not {'; not '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else "")
        if said not in _SAID:  # once per process, not once per bundle (replay --compare)
            _SAID.add(said)
            log.info("%s", said)
        return BackendChoice(backend, requested=name, skipped=skipped)
    raise BackendUnavailable(f"no backend can run: {skipped}")
