"""The Segmenter's TensorRT backend (docs/deploy.md §5-6): name-based I/O only, pycuda buffers.

- I/O is enumerated with ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` and its
  dtypes and shapes are read from the engine, never assumed (the same graph can give other
  dtypes on other TensorRT releases); inference is ``set_tensor_address`` +
  ``execute_async_v3``. No binding-index API: it was removed in 10.0.
- The pycuda context is created in the constructor's thread with ``cuda.init()`` and
  ``Device(0).make_context()``, never ``pycuda.autoinit`` (a context is bound to the thread that
  made it). Construct the backend on the inference thread; :meth:`run` pushes the context and
  pops it again, so it never leaks onto a thread, and :meth:`close` releases it.
- Pinned host buffers, one stream; outputs are copied out so the caller owns them.
- A cached plan that fails to deserialise is rebuilt once (after the cache key was already
  checked by :func:`uwstego.trt.engine.ensure_engine`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.backends.base import GraphMaps, graph_maps
from uwstego.bundle import Bundle, BundleError
from uwstego.contract import (
    GRAPH_ENHANCE,
    GRAPH_IMAGE,
    GRAPH_INPUTS,
    map_shape,
)
from uwstego.trt.cache import read_sidecar
from uwstego.trt.engine import DEFAULT_WORKSPACE_BYTES, DEVICE_INDEX, ensure_engine, input_shapes

log = logging.getLogger(__name__)



def describe_io(engine: Any, trt: Any) -> dict[str, dict[str, Any]]:
    """``{name: {is_input, dtype, shape}}`` read from the engine by name (docs/deploy.md §5)."""
    io = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        io[name] = {
            "is_input": engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            "dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
            "shape": tuple(engine.get_tensor_shape(name)),
        }
    return io


class TensorRTBackend:
    """``run(image uint8 HxWx3 (or 1xHxWx3), enhance[5] (or 1x5)) -> (labels uint8 HxW,
    confidence float32 HxW)`` on this system's engine for ``bundle``."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle, precision: str = "fp16",
                 cache_dir: str | Path | None = None, force_rebuild: bool = False,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        self._trt, self._cuda = trt, cuda
        self._bundle = bundle
        self.precision = precision
        # TensorRT wants the logger and runtime to outlive the engine they made.
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        cuda.init()
        self._ctx = cuda.Device(DEVICE_INDEX).make_context()
        try:
            self.plan = ensure_engine(bundle, precision, cache_dir, force=force_rebuild,
                                      workspace_bytes=workspace_bytes)
            self._engine = self._deserialize()
            if self._engine is None:
                log.warning("%s passed its cache check but TensorRT cannot deserialise it: "
                            "rebuilding", self.plan.name)
                self.plan = ensure_engine(bundle, precision, cache_dir, force=True,
                                          workspace_bytes=workspace_bytes)
                self._engine = self._deserialize()
                if self._engine is None:
                    raise RuntimeError(f"TensorRT cannot deserialise the freshly built "
                                       f"{self.plan}")
            self.io = describe_io(self._engine, trt)
            self._check_io()
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._host = {n: cuda.pagelocked_empty(io["shape"], io["dtype"])
                          for n, io in self.io.items()}
            self._device = {n: cuda.mem_alloc(buf.nbytes) for n, buf in self._host.items()}
            for name, mem in self._device.items():
                self._context.set_tensor_address(name, int(mem))
        except BaseException:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
            raise
        self._ctx.pop()
        log.info("tensorrt: %s on %s, I/O %s", self.plan.name, cuda.Device(DEVICE_INDEX).name(),
                 {n: f"{io['dtype']}{list(io['shape'])}" for n, io in self.io.items()})

    def _deserialize(self) -> Any:
        try:
            return self._runtime.deserialize_cuda_engine(self.plan.read_bytes())
        except Exception as exc:  # TensorRT raises on some releases and returns None on others
            log.warning("deserialising %s failed: %s", self.plan.name, exc)
            return None

    def _check_io(self) -> None:
        expected = {**input_shapes(self._bundle),
                    **{name: map_shape(self._bundle.meta.camera)
                       for name in self._bundle.meta.graph_outputs}}
        actual = {n: io["shape"] for n, io in self.io.items()}
        inputs = sorted(n for n, io in self.io.items() if io["is_input"])
        if actual != expected or inputs != sorted(GRAPH_INPUTS):
            raise BundleError(f"engine {self.plan.name} has I/O shapes {actual} (inputs "
                              f"{inputs}); the bundle expects {expected} (inputs "
                              f"{sorted(GRAPH_INPUTS)})")

    def run(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        return self.run_maps(image_u8, enhance_params)[:2]

    def run_maps(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> GraphMaps:
        host = self._host
        image = np.asarray(image_u8)
        if image.size != host[GRAPH_IMAGE].size:
            raise ValueError(f"image of shape {image.shape}; this engine takes "
                             f"{host[GRAPH_IMAGE].shape}")
        np.copyto(host[GRAPH_IMAGE], image.reshape(host[GRAPH_IMAGE].shape), casting="unsafe")
        np.copyto(host[GRAPH_ENHANCE],
                  np.asarray(enhance_params).reshape(host[GRAPH_ENHANCE].shape), casting="unsafe")
        cuda, stream = self._cuda, self._stream
        self._ctx.push()
        try:
            for name in GRAPH_INPUTS:
                cuda.memcpy_htod_async(self._device[name], host[name], stream)
            if not self._context.execute_async_v3(stream.handle):
                raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.plan.name}")
            for name in self._bundle.meta.graph_outputs:
                cuda.memcpy_dtoh_async(host[name], self._device[name], stream)
            stream.synchronize()
        finally:
            self._ctx.pop()
        return graph_maps({name: host[name] for name in self._bundle.meta.graph_outputs})

    def describe(self) -> dict[str, Any]:
        sidecar = read_sidecar(self.plan)
        return {
            "backend": self.name,
            "runtime": f"TensorRT {self._trt.__version__}",
            "engine": str(self.plan),
            "precision": self.precision,
            "cache_key": sidecar.get("key"),
            "built_at": sidecar.get("built_at"),
            "model_sha256": self._bundle.model_sha256,
            "output_dtypes": {n: str(self.io[n]["dtype"]) for n in self._bundle.meta.graph_outputs},
        }

    def close(self) -> None:
        """Free the GPU buffers and the CUDA context; the backend is unusable afterwards."""
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            for mem in self._device.values():
                mem.free()
            self._context = self._engine = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
