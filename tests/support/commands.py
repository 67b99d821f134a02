"""Run the real command-line tools in a subprocess and read their one-line errors back."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ENTRY = {"uwstego": "uwstego.cli", "export-trt": "uwstego.export.cli"}


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        """The ERROR log lines (configure_logging's format: ``time LEVEL name: message``)."""
        return [line for line in self.stderr.splitlines() if " ERROR " in line]


def run_tool(tool: str, *args: str | Path, cwd: Path | None = None, timeout: float = 300,
             env: dict[str, str] | None = None) -> Outcome:
    """``tool args...`` (``uwstego`` or ``export-trt``) with this checkout's code."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **(env or {})}
    code = f"import sys; from {_ENTRY[tool]} import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(outcome: Outcome, *needles: str, code: int = 1) -> str:
    """Exit ``code``, exactly one ERROR line containing every needle, and no traceback."""
    assert outcome.returncode == code, (outcome.returncode, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert len(outcome.errors) == 1, outcome.stderr[-2000:]
    line = outcome.errors[0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to compare before and after."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}
