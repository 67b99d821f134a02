"""Paths that must be written as text (into HTML, TensorBoard event files, JSON read by other
tools): a name whose bytes are not UTF-8 cannot be, so it is refused before any work starts."""

from __future__ import annotations

import os
from pathlib import Path


def shown(path: str | Path) -> str:
    """``path`` printable whatever its bytes (a byte that is not UTF-8 shows as ``\\xff``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def text_path(path: str | Path, what: str, needs: str) -> Path:
    """``path`` as a Path, or a ValueError naming it when it is not valid UTF-8."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {shown(path)}: the path is not valid UTF-8, which {needs} "
                         "cannot hold; rename it (or use another folder)") from None
    return Path(path)
