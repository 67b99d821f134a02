"""The node's /diagnostics status (diagnostic_updater is not on PyPI, and this is all we need).

Levels as ROS tools read them: OK only while frames arrive and are segmented as the bundle
expects; STALE when no frame arrived for ``stale_after`` seconds; WARN for a slow or lossy input,
resized frames, meaningless stamps, too many dropped or bad frames, too many novel pixels (the
scene leaves what the model knows) and a model trained on random backbone weights; ERROR when
inference failed, frames are stretched to another aspect ratio or every frame of a period was
refused (nothing is segmented). The message lists every finding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from uwstego.contract import stretches
from uwstego.image_size import Size
from uwstego.trust import read_trust
from uwstego_ros.stats import Snapshot

DAY_MS = 86_400_000.0
# An input rate within this fraction below the expected one is still on time (rate jitter).
RATE_TOLERANCE = 0.1
# camera_info messages in the rate window before its rate is trusted as the camera's rate.
MIN_CAMERA_INFOS = 3
# Frames refused in a row, none published in the period: the input is useless as configured
# (fewer could be a slow model that finished no good frame in a short period).
REFUSED_IN_A_ROW = 3


@dataclass(frozen=True)
class Expectations:
    """What the node's parameters and bundle say healthy input looks like."""

    topic: str
    transport: str
    camera: Size | None  # the bundle's camera size; None before a bundle is loaded
    stale_after: float
    expected_rate: float  # 0 = not checked
    warn_drop_ratio: float
    warn_bad_ratio: float
    warn_novel_ratio: float = 1.0  # 1 = never
    max_pixels: int = 0  # the cap frames are refused above (0: none given)
    random_weights: bool = False  # the bundle's model was trained on random backbone weights


RANDOM_WEIGHTS = "random weights: segmentation means nothing"


def trained_on_random_weights(provenance: Mapping[str, Any]) -> bool:
    """Whether a bundle's provenance says its backbone had random weights: its trust facts
    (edge/trust.py), or for bundles exported before them the training provenance's
    ``random_weights`` (``uwstego train --random-weights``)."""
    trust = read_trust(provenance)
    if trust is not None:
        return trust.random
    training = provenance.get("training")
    return isinstance(training, Mapping) and training.get("random_weights") is True


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _size_finding(input_size: str, camera: Size | None) -> tuple[bytes, str] | None:
    if not input_size or camera is None:
        return None
    size = Size.parse(input_size)
    if size == camera:
        return None
    text = f"frames {size} are resized to the bundle's camera size {camera}"
    if stretches(size, camera):
        return DiagnosticStatus.ERROR, text + " with a different aspect ratio (stretched)"
    return DiagnosticStatus.WARN, text


def findings(snap: Snapshot, state: str, expect: Expectations,
             error: str = "") -> list[tuple[bytes, str]]:
    """Every (level, message) that keeps the status from OK, most severe first."""
    trust = [(DiagnosticStatus.WARN, RANDOM_WEIGHTS)] if expect.random_weights else []
    if state == "error":
        return [(DiagnosticStatus.ERROR, error or "inference failed")]
    if state != "running":
        return [(DiagnosticStatus.WARN, state), *trust]
    out: list[tuple[bytes, str]] = []
    refused = _all_refused(snap, expect)
    if refused:
        out.append(refused)
    if snap.since_frame_s >= expect.stale_after:
        out.append((DiagnosticStatus.STALE,
                    f"no frame on {expect.topic} ({expect.transport}) for "
                    f"{snap.since_frame_s:.1f} s"))
    size = _size_finding(snap.input_size, expect.camera)
    if size:
        out.append(size)
    if expect.expected_rate > 0 and snap.input_hz < expect.expected_rate * (1 - RATE_TOLERANCE):
        out.append((DiagnosticStatus.WARN, f"input {snap.input_hz:.1f} Hz is below the "
                                           f"expected {expect.expected_rate:.1f} Hz"))
    if (snap.camera_info_count >= MIN_CAMERA_INFOS
            and snap.input_hz < snap.camera_info_hz * (1 - RATE_TOLERANCE)):
        out.append((DiagnosticStatus.WARN,
                    f"input {snap.input_hz:.1f} Hz is below camera_info {snap.camera_info_hz:.1f}"
                    " Hz: frames are lost before the node (wrong transport or remap, or raw "
                    "images over DDS without the large-data profile)"))
    delay = snap.stamp_delay_ms
    if delay is not None and delay[0] > DAY_MS:
        out.append((DiagnosticStatus.WARN, "stamps from the past: replaying? use "
                                           "--clock/use_sim_time or --restamp"))
    if snap.in_since_last:
        dropped = snap.dropped_since_last / snap.in_since_last
        bad = snap.bad_since_last / snap.in_since_last
        if dropped > expect.warn_drop_ratio:
            out.append((DiagnosticStatus.WARN, f"{dropped:.0%} of frames dropped (inference "
                                               "slower than the input)"))
        if bad > expect.warn_bad_ratio:
            out.append((DiagnosticStatus.WARN,
                        f"{snap.bad_since_last} bad frame(s): {snap.last_bad}"))
    if snap.novel_fraction is not None and snap.novel_fraction > expect.warn_novel_ratio:
        out.append((DiagnosticStatus.WARN,
                    f"{snap.novel_fraction:.1%} of pixels are novel (beyond every class's "
                    f"threshold; warn above {expect.warn_novel_ratio:.1%}): the scene leaves "
                    "what the model was trained on"))
    return out + trust


def _all_refused(snap: Snapshot, expect: Expectations) -> tuple[bytes, str] | None:
    """ERROR when frames come and are all refused: the camera is useless as configured."""
    if snap.refused_streak < REFUSED_IN_A_ROW or snap.out_since_last:
        return None
    text = f"every frame is refused ({snap.refused_streak} in a row): {snap.last_bad}"
    if snap.last_bad_kind == "too_large":
        text += (f"; frames above max_pixels ({expect.max_pixels}) are refused: set the "
                 "max_pixels parameter to at least the camera's width x height")
    return DiagnosticStatus.ERROR, text


def _level(found: list[tuple[bytes, str]]) -> bytes:
    levels = {level for level, _ in found}
    for level in (DiagnosticStatus.ERROR, DiagnosticStatus.STALE, DiagnosticStatus.WARN):
        if level in levels:
            return level
    return DiagnosticStatus.OK


def build_diagnostics(name: str, stamp: Time, snap: Snapshot, state: str,
                      backend: Mapping[str, Any], expect: Expectations,
                      error: str = "") -> DiagnosticArray:
    """One DiagnosticStatus for the node; latency figures of an empty window are left out."""
    found = findings(snap, state, expect, error)
    status = DiagnosticStatus()
    status.name = name
    status.hardware_id = str(backend.get("backend", "none"))
    status.level = _level(found)
    order = {DiagnosticStatus.ERROR: 0, DiagnosticStatus.STALE: 1, DiagnosticStatus.WARN: 2}
    status.message = "; ".join(m for _, m in sorted(found, key=lambda f: order[f[0]])) \
        or "segmenting"
    values: dict[str, Any] = {
        "state": state,
        **dict(backend),
        "input_topic": f"{expect.topic} ({expect.transport})",
        "input_size": snap.input_size,
        "camera_size": str(expect.camera or ""),
        "max_pixels": expect.max_pixels,
        "random_weights": expect.random_weights,
        "input_rate_hz": snap.input_hz,
        "camera_info_rate_hz": snap.camera_info_hz,
        "output_rate_hz": snap.output_hz,
        "seconds_since_frame": snap.since_frame_s,
    }
    if snap.novel_fraction is not None:
        values["novel_pixel_fraction"] = snap.novel_fraction
    for key, figures in (("latency", snap.latency_ms), ("inference", snap.inference_ms),
                         ("stamp_delay", snap.stamp_delay_ms)):
        if figures is not None:
            values[f"{key}_p50_ms"], values[f"{key}_p95_ms"] = figures
    values.update({
        "frames_in": snap.frames_in,
        "frames_out": snap.frames_out,
        "dropped_frames": snap.dropped,
        "bad_frames": snap.bad_frames,
        "bad_frames_by_kind": snap.bad_by_kind,
        "resolution_changes": snap.resolution_changes,
        "last_bad_frame": snap.last_bad,
    })
    status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
