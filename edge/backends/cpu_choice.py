"""Which of a bundle's CPU graphs runs fastest on this machine: timed once, then remembered.

A bundle may hold several graphs for one precision (edge/cpu_graphs.py). Which is fastest
depends on the CPU (its vector units, AVX-512, VNNI), on the ONNX Runtime build and on the
thread count, so the ONNX Runtime backend times them here on one synthetic frame and keeps the
fastest. The answer is cached next to the bundle like the TensorRT engines
(``engines/``, or the cache folder given for a read-only bundle), keyed by everything it
depends on: the CPU's model and instruction-set flags, the ONNX Runtime version, the thread
count and the graphs' checksums. Any change in those measures again (docs/deploy.md
§11).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.atomic import write_json_atomic
from uwstego.bundle import Bundle
from uwstego.contract import image_shape
from uwstego.cpu_graphs import CpuGraph
from uwstego.enhance import Enhancer

log = logging.getLogger(__name__)

# The instruction-set extensions that change which kernels ONNX Runtime's MLAS picks (x86 from
# /proc/cpuinfo "flags", ARM from "Features").
KERNEL_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd",
                "asimddp", "i8mm", "sve", "bf16")
ROUNDS = 3  # timed runs per graph and block, after one warm-up; two blocks per graph
# A graph must beat the plain one by this much to be taken: a closer race is noise, and the plain
# graph is the one checked against PyTorch.
MARGIN = 0.03


@dataclass(frozen=True)
class CpuFacts:
    model: str
    flags: tuple[str, ...]  # the KERNEL_FLAGS this CPU has
    machine: str  # x86_64, aarch64
    cores: int

    def describe(self) -> str:
        return (f"{self.model} ({self.machine}, {self.cores} cores, "
                f"{' '.join(self.flags) or 'no listed vector extensions'})")


def cpu_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFacts:
    """This CPU's model and kernel-relevant flags (``/proc/cpuinfo`` where there is one)."""
    model, flags, arm_core = platform.processor() or platform.machine(), set(), {}
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("cpu implementer", "cpu part"):
            arm_core.setdefault(key, value.strip())
    if arm_core and model == platform.machine():
        # Recent Jetson kernels name no model: the core's implementer and part number do.
        model += " " + " ".join(f"{k.removeprefix('cpu ')} {v}" for k, v in arm_core.items())
    return CpuFacts(model=model, flags=tuple(f for f in KERNEL_FLAGS if f in flags),
                    machine=platform.machine(), cores=os.cpu_count() or 1)


@dataclass(frozen=True)
class CpuChoice:
    graph: CpuGraph
    reason: str
    timings_ms: dict[str, float]  # graph name -> median per frame; empty when not measured
    cached: Path | None  # the file the choice was read from or written to


def _key(bundle: Bundle, graphs: Sequence[CpuGraph], facts: CpuFacts, ort_version: str,
         threads: int) -> dict[str, Any]:
    key = {"cpu": asdict(facts), "onnxruntime": ort_version, "threads": threads,
           "graphs": {g.name: bundle.checksums[g.file] for g in graphs}}
    return json.loads(json.dumps(key))  # as the cache file holds it (tuples become lists)


def _cache_file(folder: Path, key: dict[str, Any], precision: str) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"cpu_graph_{precision}_{digest}.json"


def _read_cached(path: Path, key: dict[str, Any], graphs: Sequence[CpuGraph]
                 ) -> CpuChoice | None:
    try:
        doc = json.loads(path.read_text())
        graph = next(g for g in graphs if g.name == doc["choice"])
        if doc["key"] != key:
            return None
        return CpuChoice(graph, f"{doc['reason']} (measured {doc['measured']}, cached in "
                                f"{path})", dict(doc["timings_ms"]), path)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None  # absent or unreadable: measured again, and rewritten


def _measure(graphs: Sequence[CpuGraph], run: Callable[[CpuGraph], Callable[[], Any]]
             ) -> dict[str, float]:
    """Median ms per run of each graph. Each graph runs in a block (one warm-up, then ROUNDS
    timed): ONNX Runtime's workers spin for a while after a run, and a run right after another
    session's would pay for that spin. The blocks go forward, then backward, so that a change
    of load hits every graph alike."""
    runners = {g.name: run(g) for g in graphs}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for order in (list(runners), list(reversed(runners))):
        for name in order:
            fn = runners[name]
            fn()  # warm-up: first runs allocate and pack weights, and wake the workers
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(s)) for name, s in samples.items()}


def choose_cpu_graph(bundle: Bundle, precision: str, threads: int, ort_version: str,
                     cache_dir: Path | None,
                     make_run: Callable[[CpuGraph, tuple[np.ndarray, np.ndarray]],
                                        Callable[[], Any]]) -> CpuChoice:
    """The fastest of ``bundle``'s CPU graphs for ``precision`` here: from the cache, else timed.

    ``make_run(graph, (image, params))`` returns a callable that runs ``graph`` once on that
    input; the backend keeps the session of the graph chosen.
    """
    graphs = bundle.cpu_graphs(precision)
    if len(graphs) == 1:
        return CpuChoice(graphs[0], "the bundle holds no other CPU graph", {}, None)
    facts = cpu_facts()
    key = _key(bundle, graphs, facts, ort_version, threads)
    folder = cache_dir if cache_dir is not None else bundle.engine_dir
    path = _cache_file(folder, key, graphs[0].precision)
    cached = _read_cached(path, key, graphs)
    if cached is not None:
        return cached
    frame = np.random.default_rng(0).integers(0, 256, image_shape(bundle.meta.camera)[1:],
                                              dtype=np.uint8)
    staged = Enhancer(bundle.meta.enhancement).host_stage(frame)
    log.info("timing %d CPU graphs of %s once on this machine (%s, %d threads)...",
             len(graphs), bundle.path, facts.describe(), threads)
    timings = _measure(graphs, lambda g: make_run(g, staged))
    plain = timings[graphs[0].name]
    best = min(graphs, key=lambda g: timings[g.name])
    if timings[best.name] > plain * (1.0 - MARGIN):
        best = graphs[0]
    reason = (f"{best.name} graph fastest here: "
              + ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items())
              + f" per frame (median of {2 * ROUNDS}, in blocks forward and back; another graph "
              f"must beat plain by {MARGIN:.0%}) on {facts.describe()}, onnxruntime {ort_version}, "
              f"{threads or 'all'} threads")
    doc = {"key": key, "choice": best.name, "reason": reason, "timings_ms": timings,
           "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, doc)
        written: Path | None = path
    except OSError as exc:  # a read-only bundle without a cache folder: measured each start
        log.warning("cannot cache the CPU graph choice in %s (%s): it is measured again at the "
                    "next start; give a writable cache folder", folder, exc.strerror or exc)
        written = None
    return CpuChoice(best, reason, timings, written)
