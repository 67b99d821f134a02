"""A full disk, said as one line: "no space left on PATH", PATH being what was written.

Libraries say it in many ways: ENOSPC with or without a file name, numpy's ``[Errno None]``,
torch.save's RuntimeError "file write failed", sqlite3's "database or disk is full". Writers wrap
their writes in :func:`naming`, which turns each of them into :class:`DiskFull` when the disk
at the path is indeed full.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uwstego.errors import UwstegoError

# Less free space than this after a failed write means the disk is what failed it.
_FULL_BELOW_BYTES = 1 << 20


class DiskFull(UwstegoError, OSError):
    """No space left where ``path`` is written (errno ENOSPC); its text is the user's one line."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"no space left on {path}: the disk is full; free space there or "
                         "write elsewhere")
        self.errno = errno.ENOSPC
        self.path = Path(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path,)


def _disk_full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
    return stat.f_bavail * stat.f_frsize < _FULL_BELOW_BYTES


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (statvfs needs one)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def full_disk(exc: BaseException, path: str | Path) -> DiskFull | None:
    """``exc`` as :class:`DiskFull` on ``path`` if a full disk caused it, else None.

    ENOSPC, and also what libraries make of it without the errno: an OSError without errno
    (numpy's ``[Errno None]``), torch.save's RuntimeError "file write failed", sqlite3's
    "database or disk is full", when the disk at ``path`` is indeed (nearly) full.
    """
    if isinstance(exc, DiskFull):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFull(path)
    if isinstance(exc, OSError) and exc.errno not in (None, errno.EIO):
        return None
    if isinstance(exc, (OSError, RuntimeError)) or type(exc).__module__ == "sqlite3":
        return DiskFull(path) if _disk_full(_existing(Path(path))) else None
    return None


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Name ``path`` in what the block raises: a full disk as :class:`DiskFull` on ``path``, an
    OSError raised without a file name (a write() that failed) with ``path``."""
    path = Path(path)
    try:
        yield
    except Exception as exc:
        full = full_disk(exc, path)
        if full is not None and full is not exc:
            raise full from exc
        if isinstance(exc, OSError) and exc.filename is None and full is None:
            exc.filename = str(path)
        raise
