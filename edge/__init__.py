"""uwstego: unsupervised underwater segmentation, from training to the vehicle.

This package is the torch-free vehicle runtime (enhancement, deploy bundles, the Segmenter and
its backends, bags, replay, the ``uwstego`` command); ``uwstego.training`` and
``uwstego.export`` are the workstation's sub-packages and need the ``train``/``export`` extras.
Nothing here imports them, so the vehicle installs ``uwstego[edge]`` alone.

The front doors are importable from here and loaded on first use, so that ``import uwstego``
costs nothing on the vehicle::

    from uwstego import Segmenter, load_bundle, open_bag, ReplaySettings
    from uwstego.replay import replay   # the sub-package `uwstego.replay` owns the name
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_FRONT_DOORS = {
    "Segmenter": "uwstego.segmenter",
    "load_bundle": "uwstego.bundle",
    "open_bag": "uwstego.bags",
    "ReplaySettings": "uwstego.replay.settings",
}

__all__ = ["ReplaySettings", "Segmenter", "__version__", "load_bundle", "open_bag"]

if TYPE_CHECKING:
    from uwstego.bags import open_bag
    from uwstego.bundle import load_bundle
    from uwstego.replay.settings import ReplaySettings
    from uwstego.segmenter import Segmenter


def __getattr__(name: str) -> Any:
    module = _FRONT_DOORS.get(name)
    if module is None:
        raise AttributeError(f"module 'uwstego' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
