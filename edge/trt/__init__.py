"""TensorRT engines for the fused graph: cache keys, the build recipe and the engine check.

Torch-free, like the rest of ``edge``: the vehicle builds and runs its engine with TensorRT and
pycuda alone. Nothing here imports either at module import time, so this package (and its cache
logic) loads on machines without them; :func:`missing_packages` says what is absent.
"""

from __future__ import annotations

import importlib.util

REQUIRED_PACKAGES = ("tensorrt", "pycuda")


def missing_packages() -> list[str]:
    """The packages of :data:`REQUIRED_PACKAGES` that cannot be imported here."""
    return [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
