"""Export: a trained model to the deploy bundle (fused ONNX graph, checked and validated).

Modules: :mod:`uwstego.export.fused` (the graph as a torch module), :mod:`uwstego.export.reference`
(the unfused
eager path it is checked against), :mod:`uwstego.export.onnx_export` (torch -> ONNX, constant
folding),
:mod:`uwstego.export.opcheck` (TensorRT 8.6 rules), :mod:`uwstego.export.validate` (ONNX Runtime vs
PyTorch),
:mod:`uwstego.export.settings` (``ExportSettings``), :mod:`uwstego.export.pipeline`
(``export_bundle``) and
:mod:`uwstego.export.cli` (``export-trt``).
"""
