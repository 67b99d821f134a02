"""Crash-safe writes: a file or folder is either complete at its final path or absent.

A full disk is raised as :class:`uwstego.disk_full.DiskFull` naming the final path; a folder has
one writer at a time (:func:`uwstego.writer_lock.claim`), which removes what killed writers of the
same folder left.
"""

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

from uwstego.disk_full import naming
from uwstego.writer_lock import TEMP_NAME, claim, remove_abandoned

log = logging.getLogger(__name__)


def _umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any threads write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; finished files get the usual permissions.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


_TMP_SUFFIX = ".tmp"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
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


def remove_leftovers(folder: str | Path, names: str) -> int:
    """Remove the temporary files that killed :func:`write_bytes_atomic` calls left in
    ``folder`` for files named like ``names`` (a glob, e.g. ``*.png``); returns how many.

    Only for a caller that owns those files (holds :func:`claim` on what holds them): a live
    writer's temporary file looks the same.
    """
    removed = 0
    for tmp in Path(folder).glob(f".{names}.{TEMP_NAME}{_TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    if removed:
        log.warning("%s: removed %d temporary files of an earlier run that was killed", folder,
                    removed)
    return removed


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
        with naming(path):
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
    which this function and ``uwstego.bundle.load_bundle`` run first, and which also removes a
    sibling left by a kill during the final delete. A kill while the block is still writing
    leaves its ``.NAME.*.staging`` folder, which the next writer of ``path`` removes. Writers of
    one ``path`` take turns (:func:`uwstego.writer_lock.claim`): a second is refused while the
    first writes.
    """
    path = Path(path)
    with claim(path):
        remove_abandoned(path, ".staging")
        recover_dir(path)
        with naming(path):
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging",
                                            dir=path.parent))
        try:
            with naming(path):
                yield staging
                os.chmod(staging, _DIR_MODE)
                _move_into_place(staging, path)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, path: Path) -> None:
    if not path.exists():
        os.replace(staging, path)
        _fsync_dir(path.parent)
        return
    # Everything in flight lives in one hidden sibling that recover_dir knows how to finish.
    held = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    try:
        os.replace(staging, held / "new")
        if not _exchange(held / "new", path):
            os.replace(path, held / "content")
            os.replace(held / "new", path)
        _fsync_dir(path.parent)
    finally:
        if path.exists():  # else recover_dir puts back what is held
            shutil.rmtree(held, ignore_errors=True)
