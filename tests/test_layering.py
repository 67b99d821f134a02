"""The dependency rules of docs/ARCHITECTURE.md, checked from the code itself.

- The vehicle runtime (``uwstego`` without its ``training`` and ``export`` sub-packages) never
  pulls in torch, ``uwstego.training`` or ``uwstego.export``.
- No import circle among the project's modules: data flows one way.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import uwstego

REPO = Path(__file__).resolve().parents[1]
# Where each part of the one installed package lives in the repository (pyproject.toml).
PACKAGE_DIRS = {"uwstego": REPO / "edge", "uwstego.training": REPO / "training",
                "uwstego.export": REPO / "export"}
WORKSTATION = ("uwstego.training", "uwstego.export")
# Present only on GPU hosts, Jetsons or ROS machines; runtime modules may need them at import.
OPTIONAL = ("tensorrt", "pycuda", "rclpy")


def _runtime_modules() -> list[str]:
    names = (m.name for m in pkgutil.walk_packages(uwstego.__path__, prefix="uwstego."))
    return sorted(n for n in names if not n.startswith(WORKSTATION))


def test_runtime_imports_neither_torch_nor_training_nor_export():
    modules = _runtime_modules()
    assert "uwstego.segmenter" in modules and "uwstego.replay.loop" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        f"        if exc.name.split('.')[0] not in {OPTIONAL!r}:\n"
        "            raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'\n"
        f"             or m.startswith({WORKSTATION!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the runtime pulled in: {out.stdout.strip()}"


def _module_files() -> dict[str, Path]:
    """Every module of the package (``uwstego.bags.bag`` -> its file), from the folders."""
    files: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join((package, *parts))] = path
    return files


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports, anywhere in its code (an import deferred into a
    function hides a circle, it does not remove it), except under ``if TYPE_CHECKING``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))

    type_checking = [n for n in ast.walk(tree) if isinstance(n, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(n.test)]
    skip = {id(n) for block in type_checking for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    found.add(target)
                elif base in known:
                    found.add(base)

    found.discard(module)
    return found


def test_no_import_circles():
    files = _module_files()
    assert "uwstego.bags.bag" in files and "uwstego.training.train" in files
    graph = {m: _imports(m, p, set(files)) for m, p in files.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for module in sorted(graph):
        if module not in index:
            strongconnect(module)
    assert not circles, f"import circles: {circles}"
