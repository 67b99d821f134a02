"""Shared timing helpers for the benchmark scripts: medians over repeats, JSON out."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def time_ms(fn: Callable[[], Any], repeats: int = 20, warmup: int = 2) -> dict[str, float]:
    """Run ``fn`` ``warmup + repeats`` times; wall-clock statistics of the timed runs in ms."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(samples)
    return {
        "median_ms": float(np.median(arr)),
        "p95_ms": float(np.percentile(arr, 95)),
        "min_ms": float(arr.min()),
        "repeats": repeats,
    }


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's one JSON object on stdout (logs go to stderr)."""
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
