"""A one-slot mailbox between the executor (writer) and the inference thread (reader).

The subscription callback only drops the newest message in; a frame that is replaced before the
worker took it is counted as dropped. The worker therefore always processes the most recent frame
and latency stays bounded by one inference period however fast the camera runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Letter:
    msg: Any
    received: float  # time.monotonic() when the callback ran


class Mailbox:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._letter: Letter | None = None
        self._closed = False
        self.dropped = 0

    def put(self, msg: Any) -> None:
        letter = Letter(msg, time.monotonic())
        with self._cond:
            if self._letter is not None:
                self.dropped += 1
            self._letter = letter
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Letter | None:
        """The newest letter, waiting up to ``timeout``; None on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._letter is not None or self._closed, timeout)
            letter, self._letter = self._letter, None
            return None if self._closed else letter

    def discard(self) -> None:
        """Forget the pending letter (the node stopped taking frames); not counted as dropped."""
        with self._cond:
            self._letter = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
