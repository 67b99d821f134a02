"""The ``fused`` CPU graph: the exported graph rewritten by ONNX Runtime's transformer optimiser.

``onnxruntime.transformers.optimizer`` with the ViT model type and the backbone's real width
and head count, at its own (Python) fusion level only: the session applies its graph
optimisations at load time anyway, to every candidate alike. On DINO's exported blocks it fuses
the residual additions with the LayerNorms after them (``SkipLayerNormalization``) and the MLP's
bias with its GELU (``BiasGelu``); its attention fusion does not match the packed-``qkv``
attention of the official ViT, and ONNX Runtime's own ``MultiHeadAttention`` kernel measured
slower than the exported MatMul/Softmax chain (docs/deploy.md §11), so attention
stays as exported. The result carries ``com.microsoft`` operators: ONNX Runtime only, never a
TensorRT input.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx
from onnx import helper

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"
METHOD = ("onnxruntime.transformers.optimizer (model_type vit, opt_level 0): residual + "
          "LayerNorm -> SkipLayerNormalization, bias + GELU -> BiasGelu")


def fuse_transformer(model: onnx.ModelProto, num_heads: int, hidden_size: int
                     ) -> onnx.ModelProto:
    """``model`` with ONNX Runtime's transformer fusions applied."""
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimiser reads a file and logs every fusion it tries at INFO.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="uwstego-fuse-") as tmp:
        source = Path(tmp) / "plain.onnx"
        onnx.save(model, str(source))
        fused = optimize_model(str(source), model_type="vit", num_heads=num_heads,
                               hidden_size=hidden_size, opt_level=0).model
    if not any(op.domain == MS_DOMAIN for op in fused.opset_import):
        # Shape inference (the INT8 quantiser's) needs the domain of the fused operators declared.
        fused.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    counts: dict[str, int] = {}
    for node in fused.graph.node:
        if node.domain == MS_DOMAIN:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    log.info("fused CPU graph: %s", ", ".join(f"{n} x{c}" for n, c in sorted(counts.items()))
             or "no fusion applied")
    return fused
