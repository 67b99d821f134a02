"""Will TensorRT 8.6 (and so 10.x) parse this ONNX file as is? Static checks, no TensorRT needed.

The allowlist is the "Supported: Y" column of onnx-tensorrt ``docs/operators.md`` at its
TensorRT 8.5 GA revision (commit 6d0ab7be, "TensorRT 8.5 supports operators up to Opset 17") plus
the operators the TensorRT 8.6 EA changelog (``docs/Changelog.md``) adds: ``GroupNormalization``,
``LayerNormalization``, ``IsInf``. TensorRT 10.x parses a superset (opsets 9-20, docs/deploy.md §8).

On top of the allowlist, the project's rules for this graph (docs/deploy.md §8, ARCHITECTURE.md):
opset 17, no custom domains, no Einsum or control flow, static shapes with every shape-like input
an initializer, Resize only linear/nearest without antialiasing and linear only on the three
innermost axes, every ArgMax followed by a Cast, uint8 converted only to and from float (the
TensorRT 8.6 ``DataType.UINT8`` rule), and the graph I/O of ARCHITECTURE.md.

QuantizeLinear/DequantizeLinear (the INT8 QDQ graph, export/int8.py) follow TensorRT 8.6's
explicit-quantisation rules: scales and zero points are initializers, scales positive, zero
points signed INT8 and all zero (symmetric: TensorRT has no asymmetric or UINT8 quantisation),
and per-channel scales (an ``axis``) only on the DequantizeLinear of a weight initializer.
"""

from __future__ import annotations

from collections import defaultdict

import onnx
from onnx import TensorProto

from uwstego.contract import (
    GRAPH_INPUTS,
    GRAPH_NOVELTY,
    GRAPH_OUTPUTS,
    GRAPH_OUTPUTS_WITH_NOVELTY,
    graph_io,
)
from uwstego.errors import UwstegoError
from uwstego.export.onnx_export import OPSET
from uwstego.image_size import Size

_TRT86_OPS_TABLE = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GroupNormalization GRU HardSigmoid HardSwish Identity If ImageScaler
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
Loop LpNormalization LpPool LRN LSTM MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod
Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
"""
TRT86_ONNX_OPS = frozenset(_TRT86_OPS_TABLE.split())

# Parsed by TensorRT 8.6 but not allowed in this graph, with the reason.
FORBIDDEN_OPS = {
    "Einsum": "limited on TensorRT 8.6 (no ellipsis, no broadcasting); use MatMul or a 1x1 Conv",
    "Loop": "control flow: the graph must be static",
    "If": "control flow: the graph must be static",
    "Scan": "control flow: the graph must be static",
    "NonZero": "data-dependent output shape: the graph must be static",
    "RandomNormal": "random values in an inference graph",
    "RandomNormalLike": "random values in an inference graph",
    "RandomUniform": "random values in an inference graph",
    "RandomUniformLike": "random values in an inference graph",
}

# Inputs that must be initializers: TensorRT requires some (Conv weights, Slice/Squeeze axes,
# TopK k); the rest make sure no shape is computed at run time.
CONSTANT_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Slice": (1, 2, 3, 4), "Squeeze": (1,),
    "Unsqueeze": (1,), "Reshape": (1,), "Resize": (1, 2, 3), "Clip": (1, 2), "TopK": (1,),
    "Split": (1,), "Expand": (1,), "Tile": (1,), "Pad": (1, 2, 3), "ReduceSum": (1,),
    "CumSum": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
}
RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                      "align_corners")
FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


class GraphCheckError(UwstegoError, ValueError):
    """The ONNX graph breaks a TensorRT or contract rule; the message lists every problem."""


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _describe(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def _types_and_shapes(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, list[int]],
                                                       list[str]]:
    """Element type and static shape of every tensor, and the names whose shape is not static."""
    graph = model.graph
    types: dict[str, int] = {}
    shapes: dict[str, list[int]] = {}
    dynamic = []
    for vi in (*graph.input, *graph.value_info, *graph.output):
        tensor = vi.type.tensor_type
        types[vi.name] = tensor.elem_type
        dims = tensor.shape.dim
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
        else:
            dynamic.append(vi.name)
    for init in graph.initializer:
        types[init.name] = init.data_type
        shapes[init.name] = list(init.dims)
    return types, shapes, dynamic


def trt_problems(model: onnx.ModelProto) -> list[str]:
    """Every reason TensorRT 8.6 would refuse, or mishandle, this graph; empty when it is fine."""
    problems = []
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        problems.append(f"ONNX shape inference fails: {str(exc).splitlines()[0]}")
    graph = model.graph
    opsets = {op.domain or "ai.onnx": op.version for op in model.opset_import}
    if opsets.get("ai.onnx") != OPSET:
        problems.append(f"opset {opsets.get('ai.onnx')}: this graph must be opset {OPSET}")
    problems += [f"custom domain {domain!r}: TensorRT parses only standard ONNX operators"
                 for domain in opsets if domain not in ("ai.onnx",)]
    types, shapes, dynamic = _types_and_shapes(model)
    if dynamic:
        problems.append(f"{len(dynamic)} tensors without a static shape, e.g. {dynamic[:3]}")
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    for node in graph.node:
        problems += _node_problems(node, initializers, shapes, types, consumers)
    for vi in graph.input:
        if types.get(vi.name) == TensorProto.UINT8:
            bad = [n for n in consumers[vi.name]
                   if n.op_type != "Cast" or _attrs(n).get("to") not in FLOATS]
            problems += [f"uint8 input {vi.name!r} feeds {_describe(n)}: TensorRT 8.6 converts "
                         "uint8 only with a Cast to float32/float16" for n in bad]
    return problems


def _node_problems(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto],
                   shapes: dict[str, list[int]], types: dict[str, int],
                   consumers: dict[str, list[onnx.NodeProto]]) -> list[str]:
    what = _describe(node)
    if node.domain not in ("", "ai.onnx"):
        return [f"{what} is in custom domain {node.domain!r}"]
    if node.op_type in FORBIDDEN_OPS:
        return [f"{what}: {FORBIDDEN_OPS[node.op_type]}"]
    if node.op_type not in TRT86_ONNX_OPS:
        return [f"{what}: not supported by the TensorRT 8.6 ONNX parser"]
    problems = [f"{what}: input {i} ({node.input[i]!r}) must be an initializer"
                for i in CONSTANT_INPUTS.get(node.op_type, ())
                if i < len(node.input) and node.input[i] and node.input[i] not in initializers]
    attrs = _attrs(node)
    if node.op_type == "Resize":
        problems += _resize_problems(node, attrs, shapes)
    elif node.op_type == "ArgMax":
        bad = [n for n in consumers[node.output[0]] if n.op_type != "Cast"]
        if bad or not consumers[node.output[0]]:
            problems.append(f"{what}: must be followed by an explicit Cast only (TensorRT gives "
                            "int32 indices on 8.6 and int64 on 10.x)")
    elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        problems += _qdq_problems(node, attrs, initializers)
    elif node.op_type == "Cast":
        source, target = types.get(node.input[0]), attrs.get("to")
        other = (source if target == TensorProto.UINT8
                 else target if source == TensorProto.UINT8 else None)
        if other is not None and other != TensorProto.UINT8 and other not in FLOATS:
            problems.append(f"{what}: casts between uint8 and "
                            f"{TensorProto.DataType.Name(other)}; TensorRT 8.6 converts uint8 "
                            "only to and from float32/float16")
    return problems


def _qdq_problems(node: onnx.NodeProto, attrs: dict[str, object],
                  initializers: dict[str, onnx.TensorProto]) -> list[str]:
    what = _describe(node)
    scale_name = node.input[1]
    zero_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    problems = [f"{what}: input {name!r} must be an initializer (TensorRT needs constant "
                "quantisation parameters)"
                for name in (scale_name, zero_name) if name and name not in initializers]
    if scale_name in initializers:
        scale = onnx.numpy_helper.to_array(initializers[scale_name])
        if scale.size == 0 or not (scale > 0).all():
            problems.append(f"{what}: scales must be positive")
        per_channel = scale.size > 1
        if per_channel and not (node.op_type == "DequantizeLinear"
                                and node.input[0] in initializers):
            problems.append(f"{what}: per-channel scales only on the DequantizeLinear of a "
                            "weight initializer (TensorRT quantises activations per tensor)")
    if zero_name is None:
        if node.op_type == "QuantizeLinear":
            problems.append(f"{what}: no zero point, so the output is UINT8; TensorRT needs a "
                            "zero INT8 zero point")
    elif zero_name in initializers:
        zero = initializers[zero_name]
        if zero.data_type != TensorProto.INT8:
            problems.append(f"{what}: zero point is {TensorProto.DataType.Name(zero.data_type)}"
                            "; TensorRT supports INT8 quantisation only")
        elif onnx.numpy_helper.to_array(zero).any():
            problems.append(f"{what}: non-zero zero point; TensorRT supports symmetric "
                            "quantisation only")
    return problems


def _resize_problems(node: onnx.NodeProto, attrs: dict[str, object],
                     shapes: dict[str, list[int]]) -> list[str]:
    what = _describe(node)
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    coords = attrs.get("coordinate_transformation_mode", b"half_pixel")
    coords = coords.decode() if isinstance(coords, bytes) else coords
    problems = []
    if mode not in RESIZE_MODES:
        problems.append(f"{what}: mode {mode!r}; TensorRT supports {RESIZE_MODES} (cubic only "
                        "on the two innermost axes)")
    if coords not in RESIZE_COORDINATES:
        problems.append(f"{what}: coordinate_transformation_mode {coords!r} is unsupported")
    if attrs.get("antialias", 0):
        problems.append(f"{what}: antialiasing is not supported by TensorRT")
    if mode == "linear" and node.input[0] in shapes:
        before = shapes[node.input[0]]
        after = shapes.get(node.output[0], before)
        if before[:-3] != after[:-3]:
            problems.append(f"{what}: linear resize of axes other than the 3 innermost "
                            f"({before} -> {after})")
    return problems


def io_problems(model: onnx.ModelProto, camera: Size) -> list[str]:
    """The graph I/O of ARCHITECTURE.md at this camera size (confidence may be float16)."""
    onnx_types = {"uint8": (TensorProto.UINT8,), "float32": (TensorProto.FLOAT,)}
    expected = {name: (FLOATS if dtype == "float32" and name not in GRAPH_INPUTS
                       else onnx_types[dtype], shape)
                for name, (dtype, shape) in graph_io(camera).items()}
    graph = model.graph
    actual = {vi.name: vi for vi in (*graph.input, *graph.output)}
    problems = []
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    if names[0] != list(GRAPH_INPUTS) or names[1] not in (list(GRAPH_OUTPUTS),
                                                          list(GRAPH_OUTPUTS_WITH_NOVELTY)):
        problems.append(f"graph I/O is inputs {names[0]} outputs {names[1]}; expected "
                        f"{list(GRAPH_INPUTS)} and {list(GRAPH_OUTPUTS)} (+ {GRAPH_NOVELTY!r})")
    for name, (dtypes, shape) in expected.items():
        if name not in actual:
            continue
        tensor = actual[name].type.tensor_type
        got = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
               for d in tensor.shape.dim]
        if tensor.elem_type not in dtypes or got != shape:
            problems.append(f"{name}: {TensorProto.DataType.Name(tensor.elem_type)} {got}, "
                            f"expected {'/'.join(TensorProto.DataType.Name(t) for t in dtypes)} "
                            f"{shape}")
    return problems


def check_graph(model: onnx.ModelProto, camera: Size) -> None:
    """Raise :class:`GraphCheckError` listing every TensorRT and I/O contract problem."""
    problems = io_problems(model, camera) + trt_problems(model)
    if problems:
        raise GraphCheckError("the exported graph fails its checks:\n  - "
                              + "\n  - ".join(problems))
