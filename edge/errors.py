"""The project's one base error type, and the one way of saying that an optional package is
missing.

Every exception class the project defines derives from :class:`UwstegoError` (and, where it
was one before, from the built-in type callers already catch: ``ValueError``, ``ImportError``
...), so the command-line tools turn any of them into one line naming the problem, never a
traceback. Which extra brings a package is read from the installed distribution's metadata
(``Requires-Dist`` with its ``extra == ...`` marker), so ``pyproject.toml`` stays the only
table of extras.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Sequence

DISTRIBUTION = "uwstego"

# Import names that differ from their distribution's name (PyPI), for the extras lookup.
_DISTRIBUTION_OF_MODULE = {"sklearn": "scikit-learn", "cv2": "opencv-python-headless",
                           "yaml": "pyyaml", "rclpy": "ros-rclpy"}


class UwstegoError(Exception):
    """Bad input, a failed check or a missing capability, said in one line by the CLIs."""


class MissingPackage(UwstegoError, ImportError):
    """An optional package a feature needs is not installed; see :func:`missing_package`."""


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def extra_of(module: str) -> str | None:
    """The first extra of the installed distribution that requires the package imported as
    ``module`` (``torch`` -> ``train``); None when none does or the distribution is not
    installed (a source checkout on PYTHONPATH)."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = _normalized(_DISTRIBUTION_OF_MODULE.get(module, module))
    for line in requires:
        requirement, _, marker = line.partition(";")
        name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if name and extra and _normalized(name.group(0)) == wanted:
            return extra.group(1)
    return None


def missing_package(needed_by: str, modules: str | Sequence[str], hint: str = "") -> str:
    """One line: what needs which package(s), that they are not installed, and the extra that
    brings them (``pip install 'uwstego[extra]'``); ``hint`` is added as it is."""
    names = [modules] if isinstance(modules, str) else list(modules)
    top = [name.split(".")[0] for name in names]
    extras = sorted({e for e in map(extra_of, top) if e is not None})
    install = f"pip install 'uwstego[{','.join(extras)}]'" if extras else \
        f"pip install {' '.join(top)}"
    verb = "is" if len(names) == 1 else "are"
    return (f"{needed_by} needs {' and '.join(names)}, which {verb} not installed here "
            f"({install}{'; ' + hint if hint else ''})")
