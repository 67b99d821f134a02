"""Crash-safe writes: a file or folder is either complete at its final path or absent."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any threads write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; finished files get the usual permissions.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# Less free space than this after a failed write means the disk is what failed it.
_FULL_BELOW_BYTES = 1 << 20


def _disk_full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
    return stat.f_bavail * stat.f_frsize < _FULL_BELOW_BYTES


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Give an OSError raised without a file name (a write() that hit a full disk) ``path``.

    Writers that hide the cause (torch.save raises RuntimeError "file write failed", numpy's
    tofile() an OSError without errno) get it back as ENOSPC on ``path`` when the disk is
    indeed full.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        hidden = isinstance(exc, RuntimeError) or exc.errno is None
        if hidden and _disk_full(path.parent if path.parent.exists() else Path.cwd()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with _naming(path), os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path for a writer that needs a file name (torch.save, cv2).

    The temporary file is renamed onto ``path`` when the block succeeds and removed otherwise.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _naming(path):
            yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
    _fsync_dir(path.parent)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# renameat2 by syscall number where the C library has no wrapper (glibc < 2.28).
_RENAMEAT2_SYSCALL = {"x86_64": 316, "aarch64": 276}


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the kernel, the C library or the file system cannot (the caller falls back).
    """
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    args = (_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if hasattr(libc, "renameat2"):
        result = libc.renameat2(*[ctypes.c_int(x) if isinstance(x, int) else x for x in args])
    elif platform.machine() in _RENAMEAT2_SYSCALL:
        result = libc.syscall(ctypes.c_long(_RENAMEAT2_SYSCALL[platform.machine()]),
                              *[ctypes.c_int(x) if isinstance(x, int) else x for x in args])
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _old_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.old"), key=lambda p: p.stat().st_mtime)


def recover_dir(path: str | Path, remove_stale: bool = True) -> bool:
    """Finish a swap of :func:`atomic_dir`'s two-rename fallback that a kill interrupted; True
    if ``path`` was put back.

    A swap keeps everything in flight in one hidden ``.NAME.*.old`` sibling: the finished new
    folder as ``new`` and, once moved aside by the fallback, the previous one as ``content``.
    With ``path`` missing, ``new`` is moved into place (the write had finished), else
    ``content`` is put back; once ``path`` exists, the sibling is stale and removed, unless
    ``remove_stale`` is false (a reader: the sibling may belong to a write in progress).
    """
    path = Path(path)
    put_back = False
    for old in reversed(_old_copies(path)):
        if not path.exists():
            for name in ("new", "content"):
                if (old / name).is_dir():
                    os.replace(old / name, path)
                    _fsync_dir(path.parent)
                    log.warning("%s: an interrupted write was completed from %s/%s", path, old,
                                name)
                    put_back = True
                    break
        if path.exists() and remove_stale:
            shutil.rmtree(old, ignore_errors=True)
    return put_back


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``path`` as a whole when the block succeeds.

    ``path`` is never mixed, whenever a kill comes. The finished folder is first moved into a
    hidden sibling ``.NAME.*.old`` as ``new``, then swapped with ``path`` by one
    ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+; ext4, xfs, btrfs, tmpfs, ...), so ``path`` is
    never missing; the sibling, now holding the old folder, is deleted. Where that call is
    missing, two renames are used (the old folder into the sibling as ``content``, ``new`` into
    place); a kill between them, where ``path`` is missing, is completed by :func:`recover_dir`,
    which this function and ``edge.bundle.load_bundle`` run first, and which also removes a
    sibling left by a kill during the final delete. Only a kill while the block is still writing
    leaves its ``.NAME.*.staging`` folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=path.parent))
    try:
        with _naming(path):
            yield staging
        os.chmod(staging, _DIR_MODE)
        if not path.exists():
            os.replace(staging, path)
            _fsync_dir(path.parent)
            return
        # Everything in flight lives in one hidden sibling that recover_dir knows how to finish.
        held = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(staging, held / "new")
        if not _exchange(held / "new", path):
            os.replace(path, held / "content")
            os.replace(held / "new", path)
        _fsync_dir(path.parent)
        shutil.rmtree(held, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
