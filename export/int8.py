"""INT8 copies of the fused graph, ViT Linears only: static QDQ (TensorRT and ONNX Runtime) and
dynamic (ONNX Runtime's fastest CPU form, :func:`quantize_dynamic_int8`).

ONNX Runtime static quantisation in QDQ format (explicit ``QuantizeLinear``/``DequantizeLinear``
pairs in standard ONNX), which ONNX Runtime's CPU provider runs with integer kernels and
TensorRT 8.6+ builds into an INT8 engine with explicit quantisation (:mod:`uwstego.trt.builder`).
The choices follow what TensorRT accepts and what accuracy needs:

- **signed INT8, symmetric** (zero point 0) for weights and activations: TensorRT's explicit
  quantisation takes only that;
- **per-channel weights** (one scale per output channel), per-tensor activations;
- **only the ViT's Linear layers** (MatMuls with a weight initializer: qkv, projection, MLP)
  are quantised. Quantising residual additions or the attention products costs ViTs most of
  their accuracy for little time; LayerNorm, Softmax, GELU, the head and the final centroid
  step (1x1 Conv, norm, ArgMax) stay in float;
- **MinMax calibration** on the host-staged sample frames: with a handful of frames the
  histogram methods have too few samples to place their percentiles.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from uwstego.contract import GRAPH_ENHANCE, GRAPH_IMAGE

log = logging.getLogger(__name__)

QUANTISED_OPS = ("MatMul",)
METHOD = ("onnxruntime.quantization.quantize_static, QDQ, symmetric int8, per-channel weights, "
          "MinMax calibration; quantised: MatMuls with weight initializers (ViT Linears); "
          "float: LayerNorm, Softmax, GELU, attention products, head, centroid step")


def linear_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight initializer."""
    weights = {init.name for init in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in QUANTISED_OPS and n.input[1] in weights]
    unnamed = [n for n in nodes if not n.name]
    if unnamed:
        raise ValueError(f"{len(unnamed)} MatMul nodes without a name cannot be selected for "
                         "quantisation")
    return [n.name for n in nodes]


def _drop_unused_domains(model: onnx.ModelProto) -> None:
    """The quantiser may declare ``com.microsoft`` without using it; TensorRT refuses custom
    domains, so declarations that no node uses are removed."""
    used = {n.domain for n in model.graph.node}
    keep = [op for op in model.opset_import if op.domain in ("", "ai.onnx") or op.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def quantize_int8(model: onnx.ModelProto,
                  calibration: Sequence[tuple[np.ndarray, np.ndarray]]) -> onnx.ModelProto:
    """The QDQ INT8 graph of ``model``, calibrated on host-staged ``(image, params)`` pairs."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not calibration:
        raise ValueError("INT8 calibration needs at least one frame")
    nodes = linear_nodes(model)
    if not nodes:
        raise ValueError("the graph has no MatMul with a weight initializer to quantise")

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(
                {GRAPH_IMAGE: image[None], GRAPH_ENHANCE: params[None].astype(np.float32)}
                for image, params in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    # quantize_static rewrites a ModelProto it is given (external data); work on files.
    with tempfile.TemporaryDirectory(prefix="uwstego-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_static(str(source), str(target), Frames(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=list(QUANTISED_OPS),
                        nodes_to_quantize=nodes, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        quantised = onnx.load(str(target))
    _drop_unused_domains(quantised)
    log.info("INT8 QDQ graph: %d Linear layers quantised on %d calibration frames", len(nodes),
             len(calibration))
    return quantised


DYNAMIC_METHOD = ("onnxruntime.quantization.quantize_dynamic, symmetric int8 weights (one scale "
                  "per tensor), activations quantised per frame; quantised: MatMuls with weight "
                  "initializers (ViT Linears); float: everything else")


def quantize_dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ViT Linears of ``model`` dynamically quantised: ONNX Runtime's CPU provider runs each
    as one ``DynamicQuantizeMatMul`` (the frame's activations quantised on the fly, the bias
    fused, float out). Per-tensor weight scales: per-channel ones measured slower on the CPU
    for no accuracy the label check could see (docs/deploy.md §11). No calibration frames."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = linear_nodes(model)
    if not nodes:
        raise ValueError("the graph has no MatMul with a weight initializer to quantise")
    with tempfile.TemporaryDirectory(prefix="uwstego-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         per_channel=False, op_types_to_quantize=list(QUANTISED_OPS),
                         nodes_to_quantize=nodes)
        quantised = onnx.load(str(target))
    log.info("dynamic INT8 graph: %d Linear layers quantised", len(nodes))
    return quantised
