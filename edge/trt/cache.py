"""The engine cache: which TensorRT plan may run on this system, and why another may not.

A plan is tied to the TensorRT version, the GPU, the ONNX graph and the build settings
(docs/deploy.md §3), so each one is stored under a name derived from an :class:`EngineKey` with a
sidecar JSON next to it::

    engines/
      fp16-sm87-trt10.3.0-<digest>.plan
      fp16-sm87-trt10.3.0-<digest>.json    the key, the plan's sha256, build facts, check results
      timing-trt10.3.0-sm87.cache          TensorRT timing cache (per TensorRT version and GPU)

A plan is used only when its sidecar holds exactly the current key and the plan's bytes match the
sha256 recorded at build time. Everything else (another GPU or TensorRT release, another graph,
a plan without sidecar, a truncated plan) is refused with a reason, and the caller rebuilds.
Pure Python: no TensorRT needed to decide.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uwstego.atomic import write_bytes_atomic, write_json_atomic
from uwstego.bundle import sha256_file

PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "uwstego.trt_engine"
L4T_RELEASE_FILE = Path("/etc/nv_tegra_release")
_L4T_PATTERN = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
_FIELD_NAMES = {
    "trt_version": "TensorRT version",
    "gpu_name": "GPU",
    "compute_capability": "compute capability",
    "l4t_release": "L4T release",
    "precision": "precision",
    "onnx_sha256": "ONNX graph (sha256)",
    "input_shapes": "input shapes",
    "optimization_level": "builder optimisation level",
}


@dataclass(frozen=True)
class EngineKey:
    """Everything a plan depends on. Two systems with equal keys can share a plan."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" for Orin
    l4t_release: str | None  # "36.3.0" on a Jetson, None elsewhere
    precision: str
    onnx_sha256: str
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    optimization_level: int | None = None  # None: TensorRT's default

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shapes"] = {k: list(v) for k, v in sorted(self.input_shapes.items())}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineKey:
        known = set(_FIELD_NAMES)
        if set(data) != known:
            raise ValueError(f"engine key fields {sorted(data)}, expected {sorted(known)}")
        values = dict(data)
        values["input_shapes"] = {str(k): tuple(int(d) for d in v)
                                  for k, v in dict(values["input_shapes"]).items()}
        return cls(**values)

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def sm(self) -> str:
        return "sm" + self.compute_capability.replace(".", "")

    def file_stem(self) -> str:
        return f"{self.precision}-{self.sm}-trt{self.trt_version}-{self.digest()}"

    def describe(self) -> str:
        where = f" (L4T {self.l4t_release})" if self.l4t_release else ""
        return (f"TensorRT {self.trt_version}, {self.gpu_name} {self.sm}{where}, "
                f"{self.precision}, graph {self.onnx_sha256[:12]}...")


def read_l4t_release(path: Path = L4T_RELEASE_FILE) -> str | None:
    """``"36.3.0"`` from ``/etc/nv_tegra_release`` on a Jetson; None where there is none."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    match = _L4T_PATTERN.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def plan_path(cache_dir: Path, key: EngineKey) -> Path:
    return Path(cache_dir) / f"{key.file_stem()}{PLAN_SUFFIX}"


def sidecar_path(plan: Path) -> Path:
    return plan.with_suffix(SIDECAR_SUFFIX)


def timing_cache_path(cache_dir: Path, key: EngineKey) -> Path:
    return Path(cache_dir) / f"timing-trt{key.trt_version}-{key.sm}.cache"


def key_differences(recorded: EngineKey, current: EngineKey) -> list[str]:
    """Readable differences, e.g. ``TensorRT version: plan 8.6.2, this system 10.3.0``."""
    mine, theirs = current.to_dict(), recorded.to_dict()
    return [f"{_FIELD_NAMES[name]}: plan {theirs[name]}, this system {mine[name]}"
            for name in _FIELD_NAMES if theirs[name] != mine[name]]


def read_sidecar(plan: Path) -> dict[str, Any]:
    """The sidecar of ``plan``; ValueError when it is missing, damaged or not ours."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise ValueError(f"{plan.name} has no sidecar {path.name}: its origin is unknown")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"sidecar {path.name} is damaged ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path.name} is not a uwstego engine sidecar")
    return doc


def is_stale(plan: Path, key: EngineKey) -> str | None:
    """Why ``plan`` must not be loaded on a system with ``key``; None when it may be."""
    plan = Path(plan)
    if not plan.is_file():
        return f"{plan.name} does not exist"
    try:
        doc = read_sidecar(plan)
    except ValueError as exc:
        return str(exc)
    try:
        recorded = EngineKey.from_dict(doc["key"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"the sidecar of {plan.name} holds no valid engine key ({exc})"
    differences = key_differences(recorded, key)
    if differences:
        return f"{plan.name} was built for another system or graph: " + "; ".join(differences)
    if doc.get("plan_sha256") != sha256_file(plan):
        return f"{plan.name} changed since it was built (truncated or replaced)"
    return None


@dataclass(frozen=True)
class EngineLookup:
    plan: Path | None  # the plan to load, or None: build one
    reason: str  # why it is usable, or why nothing usable was found


def find_engine(cache_dir: Path, key: EngineKey) -> EngineLookup:
    """The cached plan for ``key``, or None with the reason (naming what the cache did hold)."""
    cache_dir = Path(cache_dir)
    plan = plan_path(cache_dir, key)
    if plan.is_file():
        stale = is_stale(plan, key)
        if stale is None:
            return EngineLookup(plan, f"cached engine {plan.name} matches {key.describe()}")
        return EngineLookup(None, stale)
    others = sorted(cache_dir.glob(f"*{PLAN_SUFFIX}")) if cache_dir.is_dir() else []
    if not others:
        return EngineLookup(None, f"no engine cached in {cache_dir} yet")
    reasons = [is_stale(other, key) or f"{other.name} is usable" for other in others]
    return EngineLookup(None, f"no engine for {key.describe()} in {cache_dir}; "
                              f"{len(others)} cached plan(s) do not fit: " + " | ".join(reasons))


def write_engine(cache_dir: Path, key: EngineKey, plan_bytes: bytes,
                 facts: Mapping[str, Any] | None = None) -> Path:
    """Store a plan and then its sidecar (the sidecar last, so a crash leaves no valid pair)."""
    plan = plan_path(Path(cache_dir), key)
    write_bytes_atomic(plan, plan_bytes)
    write_json_atomic(sidecar_path(plan), {
        "format": SIDECAR_FORMAT,
        "key": key.to_dict(),
        "plan_sha256": hashlib.sha256(plan_bytes).hexdigest(),
        "plan_bytes": len(plan_bytes),
        **dict(facts or {}),
    })
    return plan


def update_sidecar(plan: Path, **fields: Any) -> None:
    """Add facts learnt after the build (e.g. the check against ONNX Runtime)."""
    doc = read_sidecar(Path(plan))
    doc.update(fields)
    write_json_atomic(sidecar_path(Path(plan)), doc)
