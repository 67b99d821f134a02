"""The node's /diagnostics status (diagnostic_updater is not on PyPI, and this is all we need)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from uwstego_ros.stats import Snapshot


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def build_diagnostics(name: str, stamp: Time, snap: Snapshot, state: str,
                      backend: Mapping[str, Any]) -> DiagnosticArray:
    """One DiagnosticStatus: OK while serving, WARN on new bad frames or while starting, ERROR
    when inference failed."""
    status = DiagnosticStatus()
    status.name = name
    status.hardware_id = str(backend.get("backend", "none"))
    if state == "error":
        status.level, status.message = DiagnosticStatus.ERROR, "inference failed"
    elif state != "running":
        status.level, status.message = DiagnosticStatus.WARN, state
    elif snap.bad_since_last:
        status.level = DiagnosticStatus.WARN
        status.message = f"{snap.bad_since_last} bad frame(s): {snap.last_bad}"
    else:
        status.level, status.message = DiagnosticStatus.OK, "segmenting"
    values = {
        "state": state,
        **dict(backend),
        "input_size": snap.input_size,
        "input_rate_hz": snap.input_hz,
        "output_rate_hz": snap.output_hz,
        "latency_p50_ms": snap.latency_ms[0],
        "latency_p95_ms": snap.latency_ms[1],
        "inference_p50_ms": snap.inference_ms[0],
        "inference_p95_ms": snap.inference_ms[1],
        "stamp_delay_p50_ms": snap.stamp_delay_ms[0],
        "frames_in": snap.frames_in,
        "frames_out": snap.frames_out,
        "dropped_frames": snap.dropped,
        "bad_frames": snap.bad_frames,
        "bad_frames_by_kind": snap.bad_by_kind,
        "resolution_changes": snap.resolution_changes,
        "last_bad_frame": snap.last_bad,
    }
    status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
