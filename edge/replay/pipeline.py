"""The replay's three threads: a reader ahead of the model, the caller's inference loop, and a
writer behind it.

The reader fills ``inbox`` with work items, the caller takes them (:meth:`Pipeline.frames`),
segments them and hands them to the writer (:meth:`Pipeline.put` into ``outbox``). The writer
opens the outputs on its own thread (storage plugins such as sqlite3 may only be used from the
thread that opened them), writes every item and closes the outputs when it reaches the end
marker, so that once :meth:`Pipeline.finish` returns the output bag is complete at its path.
A failure in either thread stops the run; it is kept in :attr:`Pipeline.failures` for the
caller to raise once the outputs are closed. Reader and writer run at the lowest CPU priority,
so that they never slow the model's threads (edge/cpu_share.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from uwstego.cpu_share import run_in_background

log = logging.getLogger(__name__)

W = TypeVar("W")
_END = object()
_QUEUE = 4  # items in flight per stage: enough to overlap, little memory at 1080p

# What the writer thread opens: a context whose value writes one item.
OpenOutputs = Callable[[], AbstractContextManager[Callable[[Any], None]]]


class Pipeline(Generic[W]):
    def __init__(self, produce: Callable[[], Iterator[W]], open_outputs: OpenOutputs) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue(_QUEUE)
        self.outbox: queue.Queue[Any] = queue.Queue(_QUEUE)
        self.stop = threading.Event()
        self.failures: list[tuple[str, Exception]] = []  # (stage, exception), in order
        self._produce, self._open_outputs = produce, open_outputs
        self._reader = threading.Thread(target=self._read, name="replay-reader", daemon=True)
        self._writer = threading.Thread(target=self._write, name="replay-writer")

    def start(self) -> None:
        self._writer.start()
        self._reader.start()

    def put(self, box: queue.Queue[Any], item: Any) -> bool:
        """Queue ``item``; False (item dropped) once the run is stopping."""
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                box.put(item, timeout=0.1)
                return True
        return False

    def frames(self) -> Iterator[W]:
        """The reader's items, until it ends or the run stops."""
        while not self.stop.is_set() or not self.inbox.empty():
            try:
                item = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def finish(self) -> None:
        """Let the writer write what was segmented and close the outputs, then end both threads.

        Also when :meth:`start` was never reached: the writer then opens and closes empty
        outputs, so that every run leaves them.
        """
        self.stop.set()
        if not self._writer.is_alive() and self._writer.ident is None:
            self._writer.start()
        self.outbox.put(_END)  # the writer always drains, so this cannot block for long
        self._writer.join()
        if self._reader.ident is not None:
            self._reader.join(timeout=5.0)

    def _read(self) -> None:
        run_in_background()
        try:
            with contextlib.closing(self._produce()) as works:  # type: ignore[type-var]
                for work in works:
                    if not self.put(self.inbox, work):
                        return
        except Exception as exc:
            self._fail("reading", exc)
        finally:
            self.put(self.inbox, _END)

    def _write(self) -> None:
        run_in_background()
        ended = False
        try:
            with self._open_outputs() as write:
                while not ended:
                    work = self.outbox.get()
                    ended = work is _END
                    if not ended:
                        write(work)
        except Exception as exc:
            self._fail("writing", exc)
        while not ended:  # drain to the end marker so that the inference loop never blocks
            ended = self.outbox.get() is _END

    @property
    def errors(self) -> list[str]:
        return [f"{stage}: {type(exc).__name__}: {exc}" for stage, exc in self.failures]

    def _fail(self, stage: str, exc: Exception) -> None:
        # The caller raises it (one line from the CLI); the traceback is for -v only.
        log.debug("replay %s failed", stage, exc_info=exc)
        self.failures.append((stage, exc))
        self.stop.set()


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """While the outputs are finished, a further Ctrl-C only says to wait."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def wait(_signum: int, _frame: Any) -> None:
        log.warning("finishing the output bag and report of what was done; please wait")

    previous = signal.signal(signal.SIGINT, wait)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
