"""The fused graph at FP16 on the CPU, with the layers the TensorRT build keeps in FP32.

The TensorRT FP16 build (:mod:`uwstego.trt.builder`) pins LayerNorm, Softmax and Reduce layers to
FP32; everything else may run in FP16. This module converts the FP32 ONNX graph the same way
(``onnxruntime.transformers.float16`` with those ops blocked; graph I/O stays as the contract
says) so that ONNX Runtime on the CPU can show, before the dive, what FP16 does to the labels.

What this measures: every weight and every tensor between layers is rounded to float16. Where
ONNX Runtime's CPU provider has no float16 kernel for an op it computes that op in float32
between float16 tensors, which is also how TensorRT's FP16 tensor cores accumulate. It does not
reproduce TensorRT's kernel choice or layer fusions; the engine check on the target
(:mod:`uwstego.trt.check`) measures the engine itself.
"""

from __future__ import annotations

import logging

import onnx

# ONNX ops of the layer types uwstego.trt.builder.FP32_LAYER_TYPES pins (NORMALIZATION, SOFTMAX,
# REDUCE), plus ArgMax, whose index output must not pass through a float16 cast.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin",
            "ReduceSum", "ReduceSumSquare", "ReduceProd", "ReduceL1", "ReduceLogSum",
            "ReduceLogSumExp", "ArgMax")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of ``model`` with :data:`FP32_OPS` in float32 and the I/O types kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # It lists at INFO every initializer shared by a float32 and a float16 node (the exporter
    # shares identical constants, e.g. zero biases): it stores those in float16 and casts them
    # back for the float32 node, a float16-rounded constant there; the listing is export noise.
    logging.getLogger("onnxruntime.transformers.float16").setLevel(logging.WARNING)
    return convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS))
