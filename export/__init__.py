"""Export: a trained model to the deploy bundle (fused ONNX graph, checked and validated).

Modules: :mod:`export.fused` (the graph as a torch module), :mod:`export.reference` (the unfused
eager path it is checked against), :mod:`export.onnx_export` (torch -> ONNX, constant folding),
:mod:`export.opcheck` (TensorRT 8.6 rules), :mod:`export.validate` (ONNX Runtime vs PyTorch),
:mod:`export.settings` (``ExportSettings``), :mod:`export.pipeline` (``export_bundle``) and
:mod:`export.cli` (``export-trt``).
"""
