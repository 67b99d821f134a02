"""``import-stego`` on crafted files stays bounded: a compressed record declaring gigabytes,
hyper-parameters that share one list 2^80 times, and a names YAML of nested aliases are refused
in one line, in a subprocess whose memory and CPU time are capped."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.support.bounded import run_bounded
from tests.support.commands import assert_one_line_error

torch = pytest.importorskip("torch")

CONVERT = ("import sys; from uwstego.cli import main; "
           "sys.exit(main(['import-stego', sys.argv[1], '--out', sys.argv[2]] + sys.argv[3:]))")


def _import(tmp_path: Path, checkpoint: Path, *extra: str):
    return run_bounded(CONVERT, str(checkpoint), str(tmp_path / "out" / "model.pt"), *extra,
                       memory_bytes=3 << 30, cpu_s=60)


def test_a_compressed_record_declaring_gigabytes_is_refused_unread(tmp_path: Path):
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(4)}}, plain)
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                dst.writestr(info, src.read(info))
                continue
            # The tensor's record as 256 MiB of zeros deflated to 256 KiB: torch would inflate
            # it in memory (the attack used 3 GiB; the check does not depend on the size).
            big = zipfile.ZipInfo(info.filename)
            big.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(big, "w", force_zip64=True) as f:
                for _ in range(256):
                    f.write(bytes(1 << 20))
    assert bomb.stat().st_size < 1 << 20
    outcome = _import(tmp_path, bomb)
    assert_one_line_error(outcome, "is compressed and declares 268435456 bytes", "refused")


def test_hyper_parameters_sharing_one_list_2_to_the_80_times_are_refused(tmp_path: Path):
    shared: list = []
    for _ in range(80):
        shared = [shared, shared]
    path = tmp_path / "dag.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(4)}, "hyper_parameters": {"cfg": shared}}, path)
    assert path.stat().st_size < 100_000
    outcome = _import(tmp_path, path)
    assert_one_line_error(outcome, "hyper-parameters with more than 100000 values")


def test_names_yaml_with_nested_aliases_is_refused(tmp_path: Path):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["classes: *a9"]
    names = tmp_path / "names.yaml"
    names.write_text("\n".join(lines) + "\n")
    outcome = run_bounded("import sys; from uwstego.classes import load_classes_yaml; "
                          "load_classes_yaml(sys.argv[1], 5)", str(names),
                          memory_bytes=1 << 30, cpu_s=30)
    assert outcome.returncode == 1 and "alias *a0 refused" in outcome.stderr, \
        outcome.stderr[-2000:]
