"""The graphs a bundle may hold for ONNX Runtime on a CPU: one table, read by export (which
writes them), the bundle (which lists them) and the ONNX Runtime backend (which times them once
per machine and runs the fastest; docs/deploy.md §11).

``plain`` is the exported graph itself, the TensorRT input, checked against TensorRT's op rules;
its INT8 form is the QDQ graph TensorRT builds explicit INT8 engines from. ``fused`` is the FP32
graph rewritten by ONNX Runtime's transformer optimiser (residual + LayerNorm into
``SkipLayerNormalization``, bias + GELU into ``BiasGelu``: ``com.microsoft`` operators that only
ONNX Runtime runs). ``dynamic`` is INT8 as ONNX Runtime's CPU kernels run it fastest: the ViT
Linears dynamically quantised (``DynamicQuantizeMatMul``: activations quantised per frame,
bias fused, float out), no calibration. Which pays depends on the CPU and on what else runs on
it, so it is measured where it runs, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model_int8.onnx"
FUSED_MODEL_FILE = "model_fused.onnx"
DYNAMIC_INT8_MODEL_FILE = "model_int8_dynamic.onnx"
CPU_GRAPH_NAMES = ("plain", "fused", "dynamic")


@dataclass(frozen=True)
class CpuGraph:
    name: str  # one of CPU_GRAPH_NAMES
    precision: str  # "fp32" (also what fp16 runs on ONNX Runtime) or "int8"
    file: str  # bundle-relative


CPU_GRAPHS = (
    CpuGraph("plain", "fp32", MODEL_FILE),
    CpuGraph("fused", "fp32", FUSED_MODEL_FILE),
    CpuGraph("plain", "int8", INT8_MODEL_FILE),
    CpuGraph("dynamic", "int8", DYNAMIC_INT8_MODEL_FILE),
)
GRAPH_FILES = tuple(g.file for g in CPU_GRAPHS)


def graph_precision(precision: str) -> str:
    """The graph precision a runtime precision loads: int8 the INT8 graphs, fp16 and fp32 the
    FP32 ones (FP16 engines are built from it; ONNX Runtime runs it as it is)."""
    return "int8" if precision == "int8" else "fp32"


def cpu_graph(name: str, precision: str) -> CpuGraph:
    for graph in CPU_GRAPHS:
        if graph.name == name and graph.precision == graph_precision(precision):
            return graph
    offered = [g.name for g in CPU_GRAPHS if g.precision == graph_precision(precision)]
    raise ValueError(f"CPU graph {name!r} at {precision}: expected one of {', '.join(offered)}")
