"""The TensorRT build recipe of docs/deploy.md §4, valid on TensorRT 8.6 and 10.x.

- the network takes the ``EXPLICIT_BATCH`` flag below 10 and ``0`` from 10 on (deprecated there);
- every ONNX parser error is reported;
- the workspace is set with ``set_memory_pool_limit`` (``max_workspace_size`` is gone in 10.x);
- FP16 is the ``BuilderFlag.FP16`` flag below 11 (TensorRT 11 takes precision from the ONNX
  only, so our FP32 graph builds an FP32 engine there, and the log says so);
- in FP16, the LayerNorm, Softmax and Reduce layers are pinned to FP32 with
  ``OBEY_PRECISION_CONSTRAINTS`` (docs/deploy.md §7: FP16 squares overflow past 256);
- INT8 is explicit quantisation: the bundle's QDQ graph (``model_int8.onnx``, export/int8.py)
  carries its scales, the parser turns its Q/DQ pairs into INT8 layers, and the build sets the
  ``INT8`` flag (below 11; TensorRT 11 takes it from the Q/DQ nodes alone) plus ``FP16`` for the
  layers left in float, with the same FP32 pins. No calibrator: they are deprecated in 10.1;
- the timing cache is loaded and returned updated; ``build_serialized_network`` returns None on
  failure (``build_engine`` was removed in 10.0). The graph is static, so no optimisation
  profile is added (docs/deploy.md §4, step 4).

Runs only where ``tensorrt`` is installed; it is imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uwstego.errors import UwstegoError

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "int8")
# Layer types kept in FP32 in an FP16 build (names of tensorrt.LayerType; NORMALIZATION exists
# from 8.6, where the native LayerNormalization import arrived).
FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")


class EngineBuildError(UwstegoError, RuntimeError):
    """TensorRT could not parse the graph or build the engine; the message says where."""


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def pin_layers_fp32(network: Any, trt: Any, type_names: Sequence[str] = FP32_LAYER_TYPES) -> int:
    """Set precision and output types of the named layer types to FP32; returns how many."""
    types = {getattr(trt.LayerType, name) for name in type_names if hasattr(trt.LayerType, name)}
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type in types:
            layer.precision = trt.float32
            for out in range(layer.num_outputs):
                layer.set_output_type(out, trt.float32)
            pinned += 1
    return pinned


def build_plan(onnx_file: str | Path, precision: str = "fp16", workspace_bytes: int = 1 << 30,
               timing_cache: bytes = b"", optimization_level: int | None = None
               ) -> tuple[bytes, bytes]:
    """Parse ``onnx_file`` and build a serialised plan; returns ``(plan, timing_cache)``.

    ``int8`` expects a QDQ graph (the bundle's ``model_int8.onnx``)."""
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    major = trt_major(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_file).read_bytes()):  # bytes: any file name
        errors = "\n".join(f"  {parser.get_error(i)}" for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT {trt.__version__} could not parse {onnx_file}:\n"
                               f"{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if optimization_level is not None:
        config.builder_optimization_level = optimization_level
    if precision in ("fp16", "int8"):
        if major >= 11:
            log.warning("TensorRT %s has no FP16/INT8 builder flags (precision comes from the "
                        "ONNX): float layers build in FP32%s", trt.__version__,
                        ", INT8 from the Q/DQ nodes" if precision == "int8" else "")
        else:
            if precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
            pinned = pin_layers_fp32(network, trt)
            if pinned:
                config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            log.info("%s build with %d LayerNorm/Softmax/Reduce layers kept in FP32",
                     precision.upper(), pinned)
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("the timing cache does not fit this GPU or TensorRT; starting an empty one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build an engine from "
                               f"{onnx_file} (the TensorRT log above says why)")
    return bytes(plan), bytes(cache.serialize())
