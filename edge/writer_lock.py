"""One writer per output path, and the next writer cleans up after a killed one.

A writer claims its output path (:func:`claim`) for as long as it writes; a second writer of the
same path is refused with one line. The claim is an ``flock``, which the kernel releases however
its holder dies, so a kill never blocks the next run; and because a live writer always holds it,
whatever hidden leftovers of the path the claimant finds belong to dead writers
(:func:`remove_abandoned`).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from uwstego.disk_full import naming
from uwstego.errors import UwstegoError

try:
    import fcntl
except ImportError:  # Windows: no flock; claims then hold within one process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_LOCK_SUFFIX = ".lock"
# What tempfile.mkstemp/mkdtemp put between prefix and suffix: 8 of [a-z0-9_].
TEMP_NAME = "[a-z0-9_]" * 8


class PathBusy(UwstegoError, FileExistsError):
    """Another writer holds the path (see :func:`claim`)."""


_claimed: set[Path] = set()  # paths this process holds, for a clear refusal of its own threads
_claimed_lock = threading.Lock()


def _lock_file(path: Path) -> Path:
    return path.parent / f".{path.name}{_LOCK_SUFFIX}"


def _acquire(lock: Path) -> int:
    """An open descriptor holding an exclusive flock on ``lock``, or -1 if another holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return -1
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have removed the file after we opened it: then the lock we
        # hold is on a file nobody else will find; take the one at the path.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (process {int(lock.read_text())})"
    return ""


@contextlib.contextmanager
def claim(path: str | Path) -> Iterator[Path]:
    """Be the one writer of ``path`` for the block; :class:`PathBusy` if another writer is.

    The claim is an exclusive ``flock`` on the hidden sibling ``.NAME.lock``, which the kernel
    releases when its holder dies however it dies, so a killed writer never blocks the next one;
    the file is removed when the block ends (a killed writer's stays, empty of meaning, until
    the next writer of the path removes it). While the block runs, every hidden leftover of
    ``path`` is the leftover of a dead writer. Yields the lock file's path.
    """
    path = Path(os.path.abspath(path))
    lock = _lock_file(path)
    with _claimed_lock:
        mine = path in _claimed
        _claimed.add(path)
    if mine:
        raise PathBusy(f"{path} is being written by another writer in this process; wait for "
                       "it or choose another path")
    try:
        with naming(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _acquire(lock)
        if fd < 0:
            raise PathBusy(f"{path} is being written by another process{_holder(lock)}; wait "
                           "for it to finish or choose another path")
        try:
            with contextlib.suppress(OSError):  # the holder's id is only for the message
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
            yield lock
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # before the lock is let go: the next writer makes a new one
            os.close(fd)
    finally:
        with _claimed_lock:
            _claimed.discard(path)


def remove_abandoned(path: str | Path, suffix: str) -> list[Path]:
    """Remove the hidden ``.NAME.*SUFFIX`` siblings that killed writers of ``path`` left (the
    caller holds :func:`claim` on ``path``, so no live writer owns one); returns them."""
    path = Path(path)
    removed = []
    for stale in sorted(path.parent.glob(f".{glob.escape(path.name)}.{TEMP_NAME}{suffix}")):
        size = sum(f.stat().st_size for f in stale.rglob("*") if f.is_file()) \
            if stale.is_dir() else stale.stat().st_size
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        log.warning("removed %s (%d bytes): what an earlier run writing %s left when it was "
                    "killed", stale.name, size, path)
        removed.append(stale)
    return removed
