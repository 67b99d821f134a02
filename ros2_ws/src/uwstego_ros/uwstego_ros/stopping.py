"""How the node's process ends: its exit codes, and SIGINT/SIGTERM at any point of its life.

rclpy's own signal handlers are left out (``rclpy.init(signal_handler_options=NO)``). While the
modules load (seconds on a Jetson) a signal ends the process at once: nothing is open yet, and an
exception raised inside an import would come out as a confusing ImportError. From ``main`` on, a
signal only records the request (``StopRequest``); the configure that waits for the backend and
the spin loop check it several times a second, then the node shuts down as usual. Either way the
process exits with ``EXIT_STOPPED`` after one line naming the signal and what the node was doing.
A second signal during that shutdown ends the process at once. This module imports nothing
heavy, so that it can be installed before rclpy, NumPy and OpenCV load.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

EXIT_STOPPED = 0  # the shutdown transition, SIGINT or SIGTERM, at any point
EXIT_START_FAILED = 1  # bad parameters or bundle, backend unavailable: the reason is logged
EXIT_BACKEND_FAILED = 2  # the backend failed after a successful start (a supervisor restarts)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    # rclpy's logging is not loaded yet: the line looks like its output all the same.
    sys.stderr.write(f"[WARN] [uwstego_ros]: stopped by {signal.Signals(signum).name} while "
                     "starting (loading modules); the node never ran\n")
    sys.stderr.flush()
    os._exit(EXIT_STOPPED)


def exit_on_signals() -> None:
    """While the modules load: SIGINT or SIGTERM end the process at once, with one line."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_now)


class StopRequest:
    """The first SIGINT or SIGTERM, recorded for the main loop; ``event`` is what waiting code
    checks, ``during`` what ``phase()`` said the process was doing when the signal came."""

    def __init__(self, phase: Callable[[], str]) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        self.during = ""
        self._phase = phase

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def install(self) -> None:
        """Call from the main thread (Python runs signal handlers there)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second signal: the shutdown is taking too long for the user
            os._exit(EXIT_STOPPED)
        self.signal_name = signal.Signals(signum).name
        self.during = self._phase()
        self.event.set()
