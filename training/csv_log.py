"""Step-indexed CSV logs that a resumed run continues without repeating the lost steps."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from uwstego.atomic import write_text_atomic


def restart_csv(path: Path, columns: Sequence[str], start_step: int) -> None:
    """Rewrite ``path`` with its header and the rows of steps ``<= start_step`` only: the rows a
    killed run wrote after its last checkpoint are logged again by the resumed run."""
    rows = []
    if start_step and path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
    buf = io.StringIO()
    out = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    out.writeheader()
    out.writerows(rows)
    write_text_atomic(path, buf.getvalue())
