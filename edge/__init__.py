"""uwstego vehicle runtime: enhancement, deploy bundles, the Segmenter and its backends.

Imports neither torch nor the `training`/`export` packages, so it installs on a Jetson with
numpy, OpenCV and ONNX Runtime (or TensorRT) alone.
"""

__version__ = "0.1.0"
