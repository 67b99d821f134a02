"""ONNX Runtime backend: the CPU reference everywhere, CUDA where a GPU build is installed."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from uwstego.backends.base import BackendUnavailable, GraphMaps, graph_maps
from uwstego.bundle import Bundle, BundleError, check_graph
from uwstego.contract import GRAPH_ENHANCE, GRAPH_IMAGE, GRAPH_INPUTS

log = logging.getLogger(__name__)

# ONNX type strings as ORT reports them -> numpy dtypes.
_ORT_DTYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _dtype(type_str: str, what: str) -> np.dtype:
    try:
        return np.dtype(_ORT_DTYPES[type_str])
    except KeyError:
        raise BundleError(f"model.onnx: {what} has unsupported type {type_str}") from None


class OnnxRuntimeBackend:
    """One ORT session over the bundle's fused graph.

    ``device="cuda"`` requires that the session really runs on the CUDA provider: ORT can list
    CUDA as available and still fall back to the CPU with only a stderr warning (JetPack 6), so
    the providers granted after construction are checked and reported in :meth:`describe`.
    """

    def __init__(self, bundle: Bundle, device: str = "cpu", threads: int = 0,
                 precision: str = "fp32") -> None:
        import onnxruntime as ort

        if device not in _PROVIDERS:
            raise ValueError(f"device {device!r}: expected one of {sorted(_PROVIDERS)}")
        wanted = _PROVIDERS[device]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise BackendUnavailable(f"{wanted[0]} not in this onnxruntime build "
                                     f"(available: {', '.join(available)})")
        # A missing INT8 graph is a BundleError, not BackendUnavailable: `auto` must not fall
        # through to a backend that would silently run another precision.
        self.model_path = bundle.graph_path(precision)
        self.precision = precision
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            # Bytes, not a path: ORT takes paths as UTF-8 and misreads any other name.
            self.session = ort.InferenceSession(self.model_path.read_bytes(), sess_options=opts,
                                                providers=wanted)
        except Exception as exc:  # ORT raises its own classes (InvalidProtobuf, Fail, ...)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{self.model_path}: ONNX Runtime cannot load the graph "
                              f"({detail}): the file is damaged or truncated; re-export the "
                              "bundle") from exc
        self.providers = self.session.get_providers()
        if wanted[0] not in self.providers:
            raise BackendUnavailable(f"{wanted[0]} requested but the session runs on "
                                     f"{', '.join(self.providers)}")
        self.name = "onnxruntime" if device == "cpu" else f"onnxruntime-{device}"
        self._ort_version = ort.__version__
        self._bundle = bundle
        self._check_io(bundle)
        log.debug("%s: session on %s for %s", self.name, ", ".join(self.providers),
                 self.model_path)

    def _check_io(self, bundle: Bundle) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        self._outputs = bundle.meta.graph_outputs
        check_graph(bundle, self.model_path, {n: i.shape for n, i in inputs.items()},
                    {n: o.shape for n, o in outputs.items()},
                    self.session.get_modelmeta().custom_metadata_map)
        self._in_dtypes = {n: _dtype(inputs[n].type, f"input {n!r}") for n in GRAPH_INPUTS}
        self._out_dtypes = {n: _dtype(outputs[n].type, f"output {n!r}") for n in self._outputs}

    def run(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        return self.run_maps(image_u8, enhance_params)[:2]

    def run_maps(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> GraphMaps:
        feeds = {
            GRAPH_IMAGE: np.ascontiguousarray(image_u8[None], dtype=self._in_dtypes[GRAPH_IMAGE]),
            GRAPH_ENHANCE: np.asarray(enhance_params, dtype=self._in_dtypes[GRAPH_ENHANCE])
            .reshape(1, -1),
        }
        values = self.session.run(list(self._outputs), feeds)
        return graph_maps(dict(zip(self._outputs, values, strict=True)))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "runtime": f"onnxruntime {self._ort_version}",
            "providers": list(self.providers),
            "model": str(self.model_path),
            "model_sha256": self._bundle.graph_sha256(self.precision),
            "precision": "int8" if self.precision == "int8" else "fp32",
            "output_dtypes": {n: str(d) for n, d in self._out_dtypes.items()},
        }

    def close(self) -> None:
        self.session = None
