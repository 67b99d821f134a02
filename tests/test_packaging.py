"""One distribution, one import name: a built wheel installs the package `uwstego` alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import uwstego

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            on_disk.add(".".join((package, *parts)))
    assert listed == on_disk, (f"pyproject.toml lists {sorted(listed - on_disk)} that do not "
                               f"exist and misses {sorted(on_disk - listed)}")


def test_version_is_defined_once():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    from importlib.metadata import version
    assert version("uwstego") == uwstego.__version__


@pytest.mark.slow
def test_wheel_installs_one_top_level_package(tmp_path: Path):
    # From a copy: setuptools builds in ./build, whose stale files would go into the wheel.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", "demo_out", "ros2_ws", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = tmp_path.glob("uwstego-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"uwstego"}, top
    for module in ("uwstego/segmenter.py", "uwstego/training/train.py",
                   "uwstego/export/pipeline.py", "uwstego/bags/bag.py"):
        assert module in names, module
    assert not any(n.startswith(("edge/", "training/", "export/")) for n in names)
