"""The inference thread: builds the Segmenter, then decodes and segments the newest frame.

The Segmenter is built *on this thread* because a pycuda/TensorRT backend binds its CUDA context
to the thread that creates it (docs/deploy.md section 6); every inference then runs here too, so
the executor thread never blocks on the model.

Containment: a failure that belongs to one frame (any decode error, an OpenCV error or running
out of memory while preparing it) is counted by kind, logged at most every ``WARN_EVERY_S`` and
the next frame is processed. Anything else raised while segmenting is a failure of the backend
(the engine cannot run): the worker stops in state ``error`` and the node exits non-zero, so that
a supervisor (launch ``respawn``) restarts it. So does a run of ``FATAL_AFTER`` consecutive frame
failures in the model stage, which no stream of good frames would produce.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from uwstego.image_size import Size
from uwstego.rosimage import ImageDecodeError, compressed_header, decode_image, reduction_for
from uwstego.segmenter import Segmentation, Segmenter
from uwstego_ros.mailbox import Letter, Mailbox
from uwstego_ros.stats import StreamStats

ResultHandler = Callable[[Letter, np.ndarray, Segmentation], None]
WARN_EVERY_S = 5.0
FATAL_AFTER = 20
# Raised by the Segmenter for one frame rather than by a backend that cannot run.
FRAME_ERRORS = (cv2.error, ValueError)


class InferenceWorker:
    def __init__(self, make_segmenter: Callable[[], Segmenter], mailbox: Mailbox,
                 stats: StreamStats, on_result: ResultHandler, max_rate: Callable[[], float],
                 max_pixels: Callable[[], int], reduced_decode: Callable[[], bool],
                 logger: Any) -> None:
        self._make_segmenter = make_segmenter
        self._mailbox = mailbox
        self._stats = stats
        self._on_result = on_result
        self._max_rate = max_rate
        self._max_pixels = max_pixels
        self._reduced_decode = reduced_decode
        self._failures = 0  # consecutive frames the model stage failed on
        self._resize_logged: set[Size] = set()
        self._log = logger
        self._stop = threading.Event()
        self.state = "starting"
        self.error = ""
        self.ready = threading.Event()  # set once the backend is built, or failed to build
        self.ran = False  # the backend was built and frames were being taken
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
        except Exception as exc:  # reported by the node: configure fails with the reason
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "error"
            self.ready.set()
            return
        # Described once: the facts do not change, and only this thread touches the backend.
        self.backend_info = self.segmenter.describe()
        self.state = "running"
        self.ran = True
        self.ready.set()
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
        except Exception as exc:  # the backend cannot run: reported by the node, which exits
            self.error = f"inference failed: {type(exc).__name__}: {exc}"
            self.state = "error"
        else:
            self.state = "stopped"
        finally:
            self.segmenter.close()

    def _bad(self, kind: str, reason: str) -> None:
        self._stats.bad(kind, reason)
        self._log.warning(f"bad frame skipped ({kind}): {reason}; by kind so far "
                          f"{self._stats.bad_by_kind}", throttle_duration_sec=WARN_EVERY_S)

    def _frame_failed(self, kind: str, reason: str) -> None:
        self._failures += 1
        if self._failures >= FATAL_AFTER:
            raise RuntimeError(f"{self._failures} frames in a row failed; last: {reason}")
        self._bad(kind, reason)

    def _process(self, letter: Letter) -> None:
        assert self.segmenter is not None
        try:
            reduction = 1
            if self._reduced_decode() and hasattr(letter.msg, "format"):
                # JPEGs at least twice the camera size decode straight to nearer that size.
                reduction = reduction_for(compressed_header(letter.msg),
                                          self.segmenter.camera_size)
            rgb = decode_image(letter.msg, self._max_pixels(), reduction)
        except ImageDecodeError as exc:
            self._bad(exc.kind, str(exc))
            return
        size, camera = Size.of(rgb), self.segmenter.camera_size
        if size != camera and size not in self._resize_logged:
            # Once per size in the log; diagnostics keep saying it for as long as it lasts.
            self._resize_logged.add(size)
            self._log.warning(f"frames {size} are resized to the bundle's camera size {camera}"
                              + ("" if size.width * camera.height == size.height * camera.width
                                 else " (different aspect ratio: the scene is stretched)"))
        if self._stats.size_changed(str(size)):
            # Probably a new camera mode: the colour statistics of the old one no longer apply.
            self.segmenter.reset()
            self._log.warning(f"input resolution changed to {size}; enhancement state reset",
                              throttle_duration_sec=WARN_EVERY_S)
        try:
            seg = self.segmenter.segment(rgb)
        except MemoryError:
            self._frame_failed("out_of_memory", f"out of memory segmenting a {size} frame")
            return
        except FRAME_ERRORS as exc:
            self._frame_failed("segmentation", f"segmenting a {size} frame failed: "
                                               f"{type(exc).__name__}: {exc}")
            return
        self._failures = 0
        try:
            self._on_result(letter, rgb, seg)
        except Exception as exc:  # e.g. the context shut down by SIGINT while publishing
            self._log.error(f"publishing results failed: {type(exc).__name__}: {exc}",
                            throttle_duration_sec=WARN_EVERY_S)
