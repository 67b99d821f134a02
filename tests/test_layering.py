"""The dependency rule of docs/ARCHITECTURE.md: the vehicle runtime never pulls in torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import uwstego

# Present only on GPU hosts, Jetsons or ROS machines; edge modules may need them at import.
OPTIONAL = ("tensorrt", "pycuda", "rclpy")


def test_edge_imports_neither_torch_nor_training_nor_export():
    modules = sorted(m.name for m in pkgutil.walk_packages(edge.__path__, prefix="edge."))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        f"        if exc.name.split('.')[0] not in {OPTIONAL!r}:\n"
        "            raise\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('torch', 'training', 'export'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"edge pulled in: {out.stdout.strip()}"
