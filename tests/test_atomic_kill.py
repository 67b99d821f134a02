"""``atomic_dir`` under a real SIGKILL at each step of the swap: the path always holds a whole
folder (old or new) for the next reader, and no hidden copy is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.commands import REPO, snapshot
from uwstego import atomic
from uwstego.bundle import MODEL_FILE, BundleMeta, load_bundle, write_bundle
from uwstego.classes import default_classes
from uwstego.enhance import EnhanceSettings
from uwstego.image_size import Size

# Run in a child: write a new bundle over TARGET and SIGKILL itself at the chosen step.
_CHILD = r"""
import os, signal, sys
from pathlib import Path
from uwstego import atomic
from uwstego.bundle import MODEL_FILE, write_bundle
from tests.test_atomic_kill import meta

step, target = sys.argv[1], Path(sys.argv[2])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
real_exchange, real_replace = atomic._exchange, os.replace

if step.startswith("fallback"):
    atomic._exchange = lambda a, b: False  # a system without renameat2
if step == "fallback-between-renames":
    def replace(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "content":  # the old folder is aside, the new one not yet in
            die()
    os.replace = replace
if step == "exchange-before":
    atomic._exchange = lambda a, b: die()
if step == "exchange-after":
    def exchange(a, b):
        assert real_exchange(a, b), "renameat2(RENAME_EXCHANGE) unavailable"
        die()
    atomic._exchange = exchange
if step == "exchange-during-delete":
    real_rmtree = atomic.shutil.rmtree
    atomic.shutil.rmtree = lambda p, **kw: (die() if str(p).endswith(".old")
                                            else real_rmtree(p, **kw))
write_bundle(target, meta(), {MODEL_FILE: b"new graph"})
"""


def meta() -> BundleMeta:
    return BundleMeta(camera=Size(64, 48), network=Size(64, 48), patch_size=8,
                      classes=default_classes(3), enhancement=EnhanceSettings(),
                      backbone="tiny_vit8")


def _exchange_works(tmp_path: Path) -> bool:
    a, b = tmp_path / "xa", tmp_path / "xb"
    a.mkdir(), b.mkdir()
    try:
        return atomic._exchange(a, b)
    finally:
        os.rmdir(a), os.rmdir(b)


def _kill_at(step: str, target: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, step, str(target)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize("step, survivor", [
    ("fallback-between-renames", b"new graph"),  # the write had finished: completed
    ("exchange-before", b"old graph"),
    ("exchange-after", b"new graph"),
    ("exchange-during-delete", b"new graph"),
])
def test_a_kill_at_any_step_leaves_a_whole_bundle(tmp_path: Path, step: str, survivor: bytes):
    if step.startswith("exchange") and not _exchange_works(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this system/file system")
    target = tmp_path / "bundle"
    write_bundle(target, meta(), {MODEL_FILE: b"old graph"})
    old = snapshot(target)
    _kill_at(step, tmp_path / "bundle")
    if step == "fallback-between-renames":
        assert not target.exists()  # the window the fallback cannot close by itself ...
    bundle = load_bundle(target)  # ... is repaired by the next load
    assert bundle.model_path.read_bytes() == survivor
    if survivor == b"old graph":
        assert snapshot(target) == old
    # What a kill left (the swap's hidden sibling) is gone after the next write.
    write_bundle(target, meta(), {MODEL_FILE: b"third graph"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_the_next_write_also_recovers(tmp_path: Path):
    target = tmp_path / "bundle"
    write_bundle(target, meta(), {MODEL_FILE: b"old graph"})
    _kill_at("fallback-between-renames", target)
    assert atomic.recover_dir(target)
    assert load_bundle(target).model_path.read_bytes() == b"new graph"
    assert not atomic.recover_dir(target)


_SYNTH_CHILD = r"""
import os, signal, sys
from pathlib import Path
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.synth.writer import write_dive

real_replace = os.replace
def replace(src, dst):
    if str(dst).endswith("labels/000003.png"):  # the label PNG written, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
write_dive(DiveSettings(seed=1, frames=6, width=80, height=64), sys.argv[1], folders=True)
"""


def _hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def test_the_next_synth_removes_what_a_killed_synth_left(tmp_path: Path):
    pytest.importorskip("uwstego.training.synth.sequence")
    from uwstego.training.synth.settings import DiveSettings
    from uwstego.training.synth.writer import write_dive

    out = tmp_path / "dive"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _SYNTH_CHILD, str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert any(p.startswith("dive/labels/.000003.png.") for p in _hidden(tmp_path))
    report = write_dive(DiveSettings(seed=1, frames=6, width=80, height=64), out, folders=True)
    assert report.complete and _hidden(tmp_path) == []
