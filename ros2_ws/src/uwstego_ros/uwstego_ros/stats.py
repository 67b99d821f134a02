"""Thread-safe bookkeeping of rates, latencies and counters, all in bounded memory."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

RATE_WINDOW_S = 5.0
LATENCY_SAMPLES = 300


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

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


def percentiles(samples: deque[float] | list[float], qs: tuple[float, ...]) -> list[float]:
    if not samples:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(samples, dtype=np.float64), qs)]


@dataclass
class Snapshot:
    frames_in: int
    frames_out: int
    dropped: int
    bad_frames: int
    resolution_changes: int
    input_hz: float
    output_hz: float
    latency_ms: list[float]  # p50, p95: callback -> labels published
    inference_ms: list[float]  # p50, p95: Segmenter total
    stamp_delay_ms: list[float]  # p50, p95: publish time - header.stamp (needs synced clocks)
    last_bad: str
    bad_since_last: int
    input_size: str
    bad_by_kind: dict[str, int]  # edge.rosimage.DECODE_ERROR_KINDS and the worker's own kinds


@dataclass
class StreamStats:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    frames_in: int = 0
    frames_out: int = 0
    bad_frames: int = 0
    resolution_changes: int = 0
    last_bad: str = ""
    input_size: str = ""
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    _bad_reported: int = 0
    _in: RateMeter = field(default_factory=RateMeter)
    _out: RateMeter = field(default_factory=RateMeter)
    _latency: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    _inference: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    _delay: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def received(self) -> None:
        with self._lock:
            self.frames_in += 1
            self._in.tick(time.monotonic())

    def bad(self, kind: str, reason: str) -> None:
        with self._lock:
            self.bad_frames += 1
            self.bad_by_kind[kind] = self.bad_by_kind.get(kind, 0) + 1
            self.last_bad = reason

    def size_changed(self, size: str) -> bool:
        """Record the input size; True when it differs from a previous one."""
        with self._lock:
            changed = bool(self.input_size) and size != self.input_size
            self.resolution_changes += changed
            self.input_size = size
            return changed

    def published(self, latency_ms: float, inference_ms: float, stamp_delay_ms: float) -> None:
        with self._lock:
            self.frames_out += 1
            self._out.tick(time.monotonic())
            self._latency.append(latency_ms)
            self._inference.append(inference_ms)
            self._delay.append(stamp_delay_ms)

    def snapshot(self, dropped: int) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            snap = Snapshot(
                frames_in=self.frames_in, frames_out=self.frames_out, dropped=dropped,
                bad_frames=self.bad_frames, resolution_changes=self.resolution_changes,
                input_hz=self._in.rate(now), output_hz=self._out.rate(now),
                latency_ms=percentiles(self._latency, (50, 95)),
                inference_ms=percentiles(self._inference, (50, 95)),
                stamp_delay_ms=percentiles(self._delay, (50, 95)),
                last_bad=self.last_bad, bad_since_last=self.bad_frames - self._bad_reported,
                input_size=self.input_size, bad_by_kind=dict(self.bad_by_kind))
            self._bad_reported = self.bad_frames
            return snap
