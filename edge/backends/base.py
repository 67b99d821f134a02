"""The backends' shared types: what every backend returns and takes, and its refusal.

Kept apart from the registry (``edge/backends/__init__.py``) so that each backend module imports
them without importing the registry that imports the backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from uwstego.cpu_graphs import CPU_GRAPH_NAMES
from uwstego.errors import UwstegoError

# int8 runs the bundle's INT8 QDQ graph (model_int8.onnx) on every backend.
PRECISIONS = ("fp16", "fp32", "int8")
CPU_GRAPH_CHOICES = ("auto", *CPU_GRAPH_NAMES)


class GraphMaps(NamedTuple):
    """The fused graph's per-pixel outputs for one frame."""

    labels: np.ndarray  # uint8 HxW
    confidence: np.ndarray  # float32 HxW
    novelty: np.ndarray | None  # float32 HxW in [0, 1]; None: the bundle has no calibration


def graph_maps(outputs: dict[str, np.ndarray]) -> GraphMaps:
    """Batch-1 graph outputs by name -> :class:`GraphMaps`, uint8/float32 whatever the graph
    carried (graphs for TensorRT may hold int32 labels or float16 maps)."""
    from uwstego.contract import GRAPH_CONFIDENCE, GRAPH_LABELS, GRAPH_NOVELTY

    novelty = outputs.get(GRAPH_NOVELTY)
    return GraphMaps(outputs[GRAPH_LABELS][0].astype(np.uint8, copy=False),
                     outputs[GRAPH_CONFIDENCE][0].astype(np.float32, copy=False),
                     None if novelty is None else novelty[0].astype(np.float32, copy=False))


class Backend(Protocol):
    """What the Segmenter needs from an inference runtime."""

    name: str

    def run(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        """``image_u8`` HxWx3 RGB and ``enhance_params[5]`` -> (labels HxW, confidence HxW)."""
        ...

    def run_maps(self, image_u8: np.ndarray, enhance_params: np.ndarray) -> GraphMaps:
        """As :meth:`run`, with the novelty map where the bundle has one."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for logs and diagnostics: runtime version, active providers, engine, ..."""
        ...

    def close(self) -> None:
        """Release the runtime's memory (and a CUDA context) on the thread that used it."""
        ...


class BackendUnavailable(UwstegoError, RuntimeError):
    """The backend cannot run on this machine (missing package, no GPU, provider refused)."""


@dataclass(frozen=True)
class BackendOptions:
    """Backend settings: ``precision`` picks the graph (ONNX Runtime runs the FP32 graph for
    fp16 and fp32, the INT8 graph for int8) and the engine precision (TensorRT);
    ``cache_dir`` holds TensorRT's engines and ONNX Runtime's CPU graph choice (default: the
    bundle's ``engines/``); ``threads`` is ONNX Runtime's intra-op thread count (0: one per
    core; several processes sharing a machine give each its share); ``cpu_graph`` is the CPU
    graph ONNX Runtime runs: ``auto`` the fastest here, or one of CPU_GRAPH_NAMES."""

    precision: str = "fp16"
    cache_dir: Path | None = None
    threads: int = 0
    cpu_graph: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.cpu_graph not in CPU_GRAPH_CHOICES:
            raise ValueError(f"cpu_graph {self.cpu_graph!r}: expected one of "
                             f"{', '.join(CPU_GRAPH_CHOICES)}")
