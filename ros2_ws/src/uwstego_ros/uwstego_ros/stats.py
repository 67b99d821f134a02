"""Thread-safe bookkeeping of rates, latencies and counters, all in bounded memory."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

RATE_WINDOW_S = 5.0
LATENCY_SAMPLES = 300
# Latency figures describe the last half minute: an idle node reports none rather than old ones.
LATENCY_WINDOW_S = 30.0


class RateMeter:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._times)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


class Samples:
    """The newest ``LATENCY_SAMPLES`` values of the last ``LATENCY_WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))

    def percentiles(self, now: float, qs: tuple[float, ...]) -> list[float] | None:
        """The percentiles ``qs``, or None for an empty window (never NaN)."""
        while self._items and now - self._items[0][0] > LATENCY_WINDOW_S:
            self._items.popleft()
        if not self._items:
            return None
        values = np.asarray([v for _, v in self._items], dtype=np.float64)
        return [float(v) for v in np.percentile(values, qs)]


@dataclass(frozen=True)
class Snapshot:
    frames_in: int
    frames_out: int
    dropped: int
    bad_frames: int
    resolution_changes: int
    input_hz: float
    output_hz: float
    camera_info_hz: float
    camera_info_count: int  # camera_info messages in the rate window
    latency_ms: list[float] | None  # p50, p95: callback -> labels published
    inference_ms: list[float] | None  # p50, p95: Segmenter total
    stamp_delay_ms: list[float] | None  # p50, p95: publish time - header.stamp (synced clocks)
    last_bad: str
    input_size: str
    bad_by_kind: dict[str, int]  # uwstego.rosimage.DECODE_ERROR_KINDS and the worker's own kinds
    since_frame_s: float  # since the last frame arrived, or since counting started
    in_since_last: int  # the deltas since the previous snapshot
    dropped_since_last: int
    bad_since_last: int
    # mean fraction of novel pixels (beyond their cluster's threshold) over the frames published
    # since the previous snapshot; None without calibration or without frames
    novel_fraction: float | None = None
    out_since_last: int = 0
    last_bad_kind: str = ""
    refused_streak: int = 0  # bad frames since the last published one


@dataclass
class StreamStats:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    frames_in: int = 0
    frames_out: int = 0
    bad_frames: int = 0
    resolution_changes: int = 0
    last_bad: str = ""
    last_bad_kind: str = ""
    refused_streak: int = 0
    input_size: str = ""
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    _last_frame: float = field(default_factory=time.monotonic)
    # frames_in, dropped, bad, frames_out at the last snapshot
    _reported: tuple[int, int, int, int] = (0, 0, 0, 0)
    _in: RateMeter = field(default_factory=RateMeter)
    _out: RateMeter = field(default_factory=RateMeter)
    _info: RateMeter = field(default_factory=RateMeter)
    _latency: Samples = field(default_factory=Samples)
    _inference: Samples = field(default_factory=Samples)
    _delay: Samples = field(default_factory=Samples)
    _novel: list[float] = field(default_factory=lambda: [0.0, 0.0])  # sum, frames this period

    def received(self) -> None:
        with self._lock:
            self.frames_in += 1
            self._last_frame = time.monotonic()
            self._in.tick(self._last_frame)

    def camera_info_received(self) -> None:
        with self._lock:
            self._info.tick(time.monotonic())

    def waiting_since_now(self) -> None:
        """Start the no-input clock afresh (on activation)."""
        with self._lock:
            self._last_frame = time.monotonic()

    def bad(self, kind: str, reason: str) -> None:
        with self._lock:
            self.bad_frames += 1
            self.bad_by_kind[kind] = self.bad_by_kind.get(kind, 0) + 1
            self.last_bad = reason
            self.last_bad_kind = kind
            self.refused_streak += 1

    def size_changed(self, size: str) -> bool:
        """Record the input size; True when it differs from a previous one."""
        with self._lock:
            changed = bool(self.input_size) and size != self.input_size
            self.resolution_changes += changed
            self.input_size = size
            return changed

    def published(self, latency_ms: float, inference_ms: float, stamp_delay_ms: float,
                  novel_fraction: float | None = None) -> None:
        with self._lock:
            if novel_fraction is not None:
                self._novel[0] += novel_fraction
                self._novel[1] += 1
            now = time.monotonic()
            self.frames_out += 1
            self.refused_streak = 0
            self._out.tick(now)
            self._latency.add(now, latency_ms)
            self._inference.add(now, inference_ms)
            self._delay.add(now, stamp_delay_ms)

    def snapshot(self, dropped: int) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            last_in, last_dropped, last_bad, last_out = self._reported
            snap = Snapshot(
                frames_in=self.frames_in, frames_out=self.frames_out, dropped=dropped,
                bad_frames=self.bad_frames, resolution_changes=self.resolution_changes,
                input_hz=self._in.rate(now), output_hz=self._out.rate(now),
                camera_info_hz=self._info.rate(now), camera_info_count=self._info.count(now),
                latency_ms=self._latency.percentiles(now, (50, 95)),
                inference_ms=self._inference.percentiles(now, (50, 95)),
                stamp_delay_ms=self._delay.percentiles(now, (50, 95)),
                last_bad=self.last_bad, input_size=self.input_size,
                bad_by_kind=dict(self.bad_by_kind), since_frame_s=now - self._last_frame,
                in_since_last=self.frames_in - last_in, dropped_since_last=dropped - last_dropped,
                bad_since_last=self.bad_frames - last_bad,
                novel_fraction=self._novel[0] / self._novel[1] if self._novel[1] else None,
                out_since_last=self.frames_out - last_out, last_bad_kind=self.last_bad_kind,
                refused_streak=self.refused_streak)
            self._novel = [0.0, 0.0]
            self._reported = (self.frames_in, dropped, self.bad_frames, self.frames_out)
            return snap
