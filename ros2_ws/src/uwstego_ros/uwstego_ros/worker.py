"""The inference thread: builds the Segmenter, then decodes and segments the newest frame.

The Segmenter is built *on this thread* because a pycuda/TensorRT backend binds its CUDA context
to the thread that creates it (DEPLOY.md section 6); every inference then runs here too, so the
executor thread never blocks on the model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.rosimage import ImageDecodeError, decode_image
from edge.segmenter import Segmentation, Segmenter
from uwstego_ros.mailbox import Letter, Mailbox
from uwstego_ros.stats import StreamStats

ResultHandler = Callable[[Letter, np.ndarray, Segmentation], None]
WARN_EVERY_S = 5.0


class InferenceWorker:
    def __init__(self, make_segmenter: Callable[[], Segmenter], mailbox: Mailbox,
                 stats: StreamStats, on_result: ResultHandler, max_rate: Callable[[], float],
                 logger: Any) -> None:
        self._make_segmenter = make_segmenter
        self._mailbox = mailbox
        self._stats = stats
        self._on_result = on_result
        self._max_rate = max_rate
        self._log = logger
        self._stop = threading.Event()
        self.state = "starting"
        self.error = ""
        self.segmenter: Segmenter | None = None
        self.backend_info: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    @property
    def failed(self) -> bool:
        return self.state == "error"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._mailbox.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.segmenter = self._make_segmenter()
        except Exception as exc:  # reported by the node, which then exits with the reason
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "error"
            return
        # Described once: the facts do not change, and only this thread touches the backend.
        self.backend_info = self.segmenter.describe()
        self._log.info(f"backend {self.segmenter.backend_name}: {self.backend_info}")
        self.state = "running"
        try:
            while not self._stop.is_set():
                letter = self._mailbox.take(timeout=0.5)
                if letter is None:
                    continue
                started = time.monotonic()
                self._process(letter)
                rate = self._max_rate()
                if rate > 0:
                    self._stop.wait(max(0.0, started + 1.0 / rate - time.monotonic()))
        finally:
            self.state = "stopped"
            self.segmenter.close()

    def _bad(self, reason: str) -> None:
        self._stats.bad(reason)
        self._log.warning(f"bad frame skipped: {reason}", throttle_duration_sec=WARN_EVERY_S)

    def _process(self, letter: Letter) -> None:
        assert self.segmenter is not None
        try:
            rgb = decode_image(letter.msg)
        except ImageDecodeError as exc:
            self._bad(str(exc))
            return
        h, w = rgb.shape[:2]
        if self._stats.size_changed(f"{w}x{h}"):
            # Probably a new camera mode: the colour statistics of the old one no longer apply.
            self.segmenter.reset()
            self._log.warning(f"input resolution changed to {w}x{h}; enhancement state reset",
                              throttle_duration_sec=WARN_EVERY_S)
        try:
            seg = self.segmenter.segment(rgb)
        except Exception as exc:  # one bad frame or a runtime hiccup must not stop the node
            self._bad(f"segmentation failed: {type(exc).__name__}: {exc}")
            return
        try:
            self._on_result(letter, rgb, seg)
        except Exception as exc:  # e.g. the context shut down by SIGINT while publishing
            self._log.error(f"publishing results failed: {type(exc).__name__}: {exc}",
                            throttle_duration_sec=WARN_EVERY_S)
