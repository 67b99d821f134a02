"""A full disk (ENOSPC) is one line naming the path and the cause; earlier outputs survive and no
temporary files are left. Runs the real tools on a small tmpfs in a private mount namespace
(``unshare -m``, needs root); skipped with the reason where that cannot be mounted."""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.commands import REPO, Outcome, assert_one_line_error, snapshot

_ENTRY = {"uwstego": "uwstego.cli", "export-trt": "uwstego.export.cli"}


@functools.lru_cache(maxsize=1)
def _mount_problem() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d "
                            "&& rmdir $d"], capture_output=True, text=True, check=False)
    if probe.returncode:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


@pytest.fixture()
def small_disk(tmp_path: Path):
    problem = _mount_problem()
    if problem:
        pytest.skip(f"disk-full test needs a small tmpfs: {problem}")
    return tmp_path


def run_on_full_disk(work: Path, size_kb: int, earlier: Path | None, tool: str,
                     *args: str | Path) -> tuple[Outcome, Path]:
    """Mount a ``size_kb`` tmpfs at ``work/disk``, copy ``earlier`` onto it, run the tool there
    (``{disk}`` in ``args`` is the mount point), and return its outcome and a copy of the disk
    afterwards."""
    disk, after = work / "disk", work / "after"
    disk.mkdir(parents=True)
    code = f"import sys; from {_ENTRY[tool]} import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, *(str(a).replace("{disk}", str(disk)) for a in args)]
    script = "\n".join([
        "set -u",
        f"mount -t tmpfs -o size={size_kb}k tmpfs {disk} || exit 99",
        f"cp -a {shlex.quote(str(earlier))}/. {disk}/" if earlier else "true",
        f"cd {disk}",
        f"PYTHONPATH={shlex.quote(str(REPO))} {shlex.join(argv)} >{work}/out 2>{work}/err",
        f"echo $? >{work}/rc",
        f"tar -C {disk} -cf {work}/after.tar .",
    ])
    subprocess.run(["unshare", "-m", "bash", "-c", script], check=True, timeout=600)
    with tarfile.open(work / "after.tar") as tar:
        tar.extractall(after)
    outcome = Outcome(int((work / "rc").read_text()), (work / "out").read_text(),
                      (work / "err").read_text())
    return outcome, after


def _leftovers(root: Path) -> list[str]:
    """Hidden entries: the atomic writers' temporary files and folders (nothing else here)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def _tiny_checkpoint(path: Path) -> Path:
    pytest.importorskip("torch")
    from tests.support.tiny_export import make_tiny_model
    from uwstego.training.artifact import save_trained_model

    return save_trained_model(path, make_tiny_model(seed=0, k=4))


@pytest.fixture(scope="module")
def earlier_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint and the bundle a first export wrote from it (the earlier output)."""
    root = tmp_path_factory.mktemp("earlier")
    ckpt = _tiny_checkpoint(root / "model.pt")
    pytest.importorskip("onnx")
    from uwstego.export.pipeline import export_bundle
    from uwstego.export.settings import ExportSettings

    export_bundle(ckpt, root / "outputs" / "bundle", ExportSettings(camera="64x48", engine="skip"))
    return ckpt, root / "outputs"


@pytest.mark.parametrize("tool, command", [("export-trt", []), ("uwstego", ["export"])])
def test_export_on_a_full_disk_keeps_the_earlier_bundle(small_disk: Path, earlier_bundle,
                                                        tool, command):
    ckpt, outputs = earlier_bundle
    used = sum(p.stat().st_size for p in outputs.rglob("*") if p.is_file()) // 1024
    # Room for the earlier bundle and a bit, not for a second copy of the graph.
    outcome, after = run_on_full_disk(small_disk, used + 96, outputs, tool, *command, ckpt,
                                      "--camera-size", "64x48", "--out", "{disk}/bundle",
                                      "--engine", "skip", "--seed", "1")
    line = assert_one_line_error(outcome, "no space left on", str(small_disk / "disk"))
    assert snapshot(after) == snapshot(outputs), line
    assert _leftovers(after) == []


def test_synth_on_a_full_disk_keeps_earlier_dives(small_disk: Path, tmp_path: Path):
    from uwstego.training.synth.settings import DiveSettings
    from uwstego.training.synth.writer import write_dive

    earlier = tmp_path / "earlier"
    write_dive(DiveSettings(seed=1, frames=2, width=80, height=64), earlier / "old_dive",
               folders=True, bag=False, progress=False)
    used = sum(p.stat().st_size for p in earlier.rglob("*") if p.is_file()) // 1024
    outcome, after = run_on_full_disk(small_disk / "run", used + 120, earlier, "uwstego",
                                      "synth", "{disk}/new", "--frames", "30", "--size",
                                      "80x64", "--format", "folders")
    assert_one_line_error(outcome, "no space left on", str(small_disk / "run" / "disk"))
    assert {k: v for k, v in snapshot(after).items() if k.startswith("old_dive")} == \
        snapshot(earlier)
    assert _leftovers(after) == []


def test_a_model_save_on_a_full_disk_keeps_the_earlier_model(small_disk: Path, tmp_path: Path):
    # torch.save reports a full disk as RuntimeError("... file write failed"), without a path.
    from uwstego.classes import default_classes, save_classes_yaml

    earlier = tmp_path / "earlier"
    model = _tiny_checkpoint(earlier / "run" / "model.pt")
    save_classes_yaml(earlier / "names.yaml", default_classes(4))
    used = sum(p.stat().st_size for p in earlier.rglob("*") if p.is_file()) // 1024
    outcome, after = run_on_full_disk(small_disk / "run", used + 64, earlier, "uwstego",
                                      "clusters", "run", "--apply", "names.yaml")
    assert model.stat().st_size > 64 * 1024  # a second copy cannot fit
    assert_one_line_error(outcome, "no space left on run/model.pt")
    assert snapshot(after) == snapshot(earlier)
    assert _leftovers(after) == []


@pytest.fixture(scope="module")
def replay_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A 60-frame dive (about 0.6 MB) and a bundle for its camera, outside the small disk."""
    from tests.support.bundles import make_tiny_bundle
    from tests.support.media import scene, write_bag

    root = tmp_path_factory.mktemp("replay")
    bag = write_bag(root / "dive", [scene(i, h=48, w=64) for i in range(60)])
    return bag, make_tiny_bundle(root / "bundle", camera=(64, 48))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("report", [False, True])
def test_replay_on_a_full_disk_leaves_the_disk_as_it_was(small_disk: Path, replay_inputs,
                                                         storage: str, report: bool):
    if report:
        pytest.importorskip("matplotlib")
    bag, bundle = replay_inputs
    outcome, after = run_on_full_disk(
        small_disk, 256, None, "uwstego", "replay", bag, "--bundle", bundle, "--out",
        "{disk}/out", "--storage", storage, "--backend", "onnxruntime", "--no-progress",
        *(["--report", "{disk}/report"] if report else []))
    assert_one_line_error(outcome, "no space left on", str(small_disk / "disk"))
    # Nothing hidden is left to keep the disk full for the next dive.
    assert _leftovers(after) == []
    assert not (after / "out").exists() or (after / "out" / "metadata.yaml").is_file()


def test_synth_writing_its_bag_on_a_full_disk_leaves_no_staging(small_disk: Path):
    outcome, after = run_on_full_disk(small_disk, 256, None, "uwstego", "synth", "{disk}/new",
                                      "--frames", "30", "--size", "80x64", "--format", "bag")
    assert_one_line_error(outcome, "no space left on", str(small_disk / "disk"))
    assert _leftovers(after) == []
