"""Ctrl-C (SIGINT) and SIGTERM during training: finish the step, save the state, stop.

The first signal only sets a flag, so the state written is a whole step's; a second one aborts
at once (KeyboardInterrupt). Under torch.distributed the flag is shared at every step, so all
ranks stop after the same step and checkpoint together.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch

from uwstego.training import distributed as ddp

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving its state at ``step``."""

    def __init__(self, step: int, state_path: Path, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; "
                         f"training state saved to {state_path}")
        self.step, self.state_path, self.signum = step, state_path, signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class StopRequests:
    """Context manager that turns SIGINT/SIGTERM into a request the loop polls."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: stop now, without saving
        self.signum = signum

    def __enter__(self) -> StopRequests:
        # Signal handlers can only be set from the main thread (a test or a notebook may train
        # from another): there the default behaviour stays.
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def requested(self, device: torch.device) -> int | None:
        """The signal received (on any rank), or None to go on."""
        if not ddp.dist_info().active:
            return self.signum
        flag = torch.tensor([1.0 if self.signum else 0.0], device=device)
        if float(ddp.mean_over_ranks(flag)) == 0.0:
            return None
        return self.signum or signal.SIGTERM  # torchrun sends every rank the same signal
