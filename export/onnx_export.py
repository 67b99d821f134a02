"""Torch -> ONNX for the fused graph: legacy exporter, opset 17, static shapes, folded constants.

``torch.onnx.export(dynamo=False)`` (docs/deploy.md §8: the TorchScript exporter is the one whose
output TensorRT 8.6 and 10.3 are known to parse) keeps some shape arithmetic that is constant
for a static graph (``Shape -> Slice -> Concat`` feeding a Resize, ``ConstantOfShape -> Where ->
Expand`` for the CLS token). :func:`fold_constants` evaluates it with ONNX's reference runtime,
so every shape, axes and size input ends up an initializer; onnx has no simplifier of its own
and onnxsim is not a dependency.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from uwstego.contract import (
    GRAPH_CLASSES_KEY,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    GRAPH_OUTPUTS_WITH_NOVELTY,
    image_shape,
)
from uwstego.enhance import IDENTITY_PARAMS
from uwstego.export.fused import FusedSegmenter

log = logging.getLogger(__name__)

OPSET = 17
# Folded results up to this many elements become initializers; larger ones stay computed so
# folding never bloats the file (the exporter has already folded the weights).
FOLD_MAX_ELEMENTS = 1 << 16
_NON_DETERMINISTIC = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform",
                                "RandomUniformLike", "Multinomial", "Bernoulli"})


def export_onnx(fused: FusedSegmenter) -> onnx.ModelProto:
    """Trace ``fused`` at its camera size and return the checked, constant-folded model."""
    example = (torch.zeros(image_shape(fused.camera), dtype=torch.uint8),
               torch.from_numpy(IDENTITY_PARAMS.copy())[None])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; choosing it is deliberate here.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # Shape checks in the backbone become trace-time constants: right for a static graph.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(fused.eval(), example, buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(GRAPH_INPUTS),
                          output_names=list(GRAPH_OUTPUTS_WITH_NOVELTY if fused.calibrated
                                            else GRAPH_OUTPUTS),
                          do_constant_folding=True)
    model = fold_constants(onnx.load_from_string(buffer.getvalue()))
    # The classes the labels index (the centroids, or fewer where clusters were merged); the
    # loader checks bundle.json against it.
    helper.set_model_props(model, {GRAPH_CLASSES_KEY: str(fused.num_labels)})
    onnx.checker.check_model(model, full_check=True)
    return model


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    value = helper.get_attribute_value(attr)
    dtype = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
             "value_ints": np.int64}.get(attr.name)
    if dtype is None:
        raise ValueError(f"Constant node {node.name!r} with unsupported attribute {attr.name}")
    return np.asarray(value, dtype=dtype)


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    graph = model.graph
    shapes = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    return shapes


def _evaluate(node: onnx.NodeProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run one node under opset 17 semantics (axes as attributes or inputs, as that opset says)."""
    graph = helper.make_graph(
        [node], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for n, v in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in node.output if o])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return list(ReferenceEvaluator(model).run(None, inputs))


def fold_constants(model: onnx.ModelProto, max_elements: int = FOLD_MAX_ELEMENTS
                   ) -> onnx.ModelProto:
    """Evaluate every node whose inputs are constants (or a ``Shape`` of a static tensor).

    ``Constant`` nodes become initializers and ``Identity`` nodes are bypassed; unused
    initializers are dropped. Repeated until nothing changes, because a folded Resize size makes
    the shapes after it known, which lets the next round fold the ``Shape`` nodes there.
    """
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    while True:
        count = len(model.graph.node)
        model = _fold_once(model, max_elements)
        if len(model.graph.node) == count:
            return model


def _fold_once(model: onnx.ModelProto, max_elements: int) -> onnx.ModelProto:
    graph = model.graph
    shapes = _static_shapes(model)
    outputs = {o.name for o in graph.output}
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    alias: dict[str, str] = {}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        node.input[:] = [alias.get(name, name) for name in node.input]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
            continue
        values = None
        if node.op_type == "Constant":
            values = [_constant_value(node)]
        elif node.op_type == "Shape" and node.input[0] in shapes:
            attrs = {a.name: a.i for a in node.attribute}
            dims = shapes[node.input[0]][attrs.get("start", 0):attrs.get("end")]
            values = [np.asarray(dims, dtype=np.int64)]
        elif (node.op_type not in _NON_DETERMINISTIC
              and all(not name or name in consts for name in node.input)):
            values = _evaluate(node, {n: consts[n] for n in node.input if n})
        if values is not None and all(np.asarray(v).size <= max_elements
                                      or node.op_type == "Constant" for v in values):
            consts.update(zip(node.output, (np.asarray(v) for v in values), strict=False))
            continue
        kept.append(node)
    used = {name for node in kept for name in node.input} | outputs
    initializers = [numpy_helper.from_array(consts[name], name) for name in sorted(used)
                    if name in consts]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
