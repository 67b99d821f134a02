"""Run Python code in a subprocess with its memory and CPU time capped, for tests that feed a
memory or time bomb to the code: a regression then fails the test instead of the machine."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

from tests.support.commands import REPO, Outcome


def run_bounded(code: str, *args: str, memory_bytes: int = 2 << 30, cpu_s: int = 60,
                timeout: float = 120) -> Outcome:
    """``python -c code args...`` with this checkout on the path, its data segment (heap and
    anonymous mappings) capped at ``memory_bytes`` and its CPU time at ``cpu_s``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit, check=False)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)
