"""ONNX Runtime backend: the CPU reference everywhere, CUDA where a GPU build is installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.backends.base import BackendUnavailable, GraphMaps, graph_maps
from uwstego.backends.cpu_choice import choose_cpu_graph
from uwstego.bundle import Bundle, BundleError, check_graph
from uwstego.contract import GRAPH_ENHANCE, GRAPH_IMAGE, GRAPH_INPUTS, graph_io
from uwstego.cpu_graphs import CpuGraph, cpu_graph

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


def _feeds(image_u8: np.ndarray, enhance_params: np.ndarray) -> dict[str, np.ndarray]:
    """Batch-1 feeds in the contract's dtypes (edge/contract.py): uint8 image, float32 params."""
    return {GRAPH_IMAGE: np.ascontiguousarray(image_u8[None], dtype=np.uint8),
            GRAPH_ENHANCE: np.asarray(enhance_params, dtype=np.float32).reshape(1, -1)}


def _named_graph(bundle: Bundle, name: str, precision: str) -> CpuGraph:
    graph = cpu_graph(name, precision)
    if graph not in bundle.cpu_graphs(precision):
        raise BundleError(f"bundle {bundle.path} has no {name} {graph.precision} graph "
                          f"({graph.file}): choose cpu_graph auto, or re-export the bundle")
    return graph


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
    On the CPU, a bundle with several graphs for the precision runs the one ``cpu_graph`` names,
    or with ``auto`` the fastest on this machine (edge/backends/cpu_choice.py).
    """

    def __init__(self, bundle: Bundle, device: str = "cpu", threads: int = 0,
                 precision: str = "fp32", cpu_graph: str = "auto",
                 cache_dir: Path | None = None) -> None:
        import onnxruntime as ort

        if device not in _PROVIDERS:
            raise ValueError(f"device {device!r}: expected one of {sorted(_PROVIDERS)}")
        wanted = _PROVIDERS[device]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise BackendUnavailable(f"{wanted[0]} not in this onnxruntime build "
                                     f"(available: {', '.join(available)})")
        self.precision = precision
        self._threads = threads
        self._providers = wanted
        self._ort_version = ort.__version__
        self._bundle = bundle
        # A missing INT8 graph is a BundleError, not BackendUnavailable: `auto` must not fall
        # through to a backend that would silently run another precision.
        if device != "cpu" or cpu_graph != "auto":
            self.graph = _named_graph(bundle, "plain" if device != "cpu" else cpu_graph,
                                      precision)
            self.graph_reason = ("the plain graph: the fused ones are for the CPU"
                                 if device != "cpu" else f"cpu_graph {cpu_graph!r} requested")
            self.session = self._open(self.graph)
        else:
            sessions: dict[str, Any] = {}

            def make_run(graph: CpuGraph, staged: tuple[np.ndarray, np.ndarray]):
                session = sessions[graph.name] = self._open(graph)
                feeds = _feeds(*staged)
                return lambda: session.run(None, feeds)

            choice = choose_cpu_graph(bundle, precision, threads, self._ort_version, cache_dir,
                                      make_run)
            self.graph, self.graph_reason = choice.graph, choice.reason
            self.session = sessions.get(self.graph.name) or self._open(self.graph)
            sessions.clear()
            log.info("onnxruntime: %s", self.graph_reason)
        self.model_path = bundle.path / self.graph.file
        self.providers = self.session.get_providers()
        if wanted[0] not in self.providers:
            raise BackendUnavailable(f"{wanted[0]} requested but the session runs on "
                                     f"{', '.join(self.providers)}")
        self.name = "onnxruntime" if device == "cpu" else f"onnxruntime-{device}"
        self._check_io(bundle)
        log.debug("%s: session on %s for %s", self.name, ", ".join(self.providers),
                  self.model_path)

    def _open(self, graph: CpuGraph) -> Any:
        import onnxruntime as ort

        path = self._bundle.path / graph.file
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.log_severity_level = 3
        try:
            # Bytes, not a path: ORT takes paths as UTF-8 and misreads any other name.
            return ort.InferenceSession(path.read_bytes(), sess_options=opts,
                                        providers=self._providers)
        except Exception as exc:  # ORT raises its own classes (InvalidProtobuf, Fail, ...)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{path}: ONNX Runtime cannot load the graph ({detail}): the file "
                              "is damaged or truncated; re-export the bundle") from exc

    def _check_io(self, bundle: Bundle) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        self._outputs = bundle.meta.graph_outputs
        check_graph(bundle, self.model_path, {n: i.shape for n, i in inputs.items()},
                    {n: o.shape for n, o in outputs.items()},
                    self.session.get_modelmeta().custom_metadata_map)
        expected = graph_io(bundle.meta.camera)
        for name in GRAPH_INPUTS:
            if _dtype(inputs[name].type, f"input {name!r}") != np.dtype(expected[name][0]):
                raise BundleError(f"{self.model_path}: input {name!r} is {inputs[name].type}, "
                                  f"the contract says {expected[name][0]}; re-export the bundle")
        self._out_dtypes = {n: _dtype(outputs[n].type, f"output {n!r}") for n in self._outputs}

    def run(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        return self.run_maps(image_u8, enhance_params)[:2]

    def run_maps(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> GraphMaps:
        values = self.session.run(list(self._outputs), _feeds(image_u8, enhance_params))
        return graph_maps(dict(zip(self._outputs, values, strict=True)))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "runtime": f"onnxruntime {self._ort_version}",
            "providers": list(self.providers),
            "model": str(self.model_path),
            "model_sha256": self._bundle.checksums[self.graph.file],
            "graph": self.graph.name,
            "graph_choice": self.graph_reason,
            "precision": "int8" if self.precision == "int8" else "fp32",
            "output_dtypes": {n: str(d) for n, d in self._out_dtypes.items()},
        }

    def close(self) -> None:
        self.session = None
