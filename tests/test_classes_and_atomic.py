from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from uwstego.atomic import atomic_dir, atomic_path, write_bytes_atomic
from uwstego.classes import (
    ClassInfo,
    check_cluster_classes,
    default_classes,
    load_classes_yaml,
    merge_by_name,
    save_classes_yaml,
)


def test_default_classes_are_distinct():
    classes = default_classes(12)
    assert [c.name for c in classes][:2] == ["cluster_0", "cluster_1"]
    assert len({c.color for c in classes}) == 12


def test_classes_yaml_round_trip_and_errors(tmp_path: Path):
    classes = (ClassInfo("water", (0, 0, 255)), ClassInfo("sand", (230, 200, 120)))
    path = save_classes_yaml(tmp_path / "names.yaml", classes)
    assert load_classes_yaml(path, expected=2) == classes
    with pytest.raises(ValueError, match="names 2 classes but the model has 3"):
        load_classes_yaml(path, expected=3)
    path.write_text("classes:\n  - {name: water, color: [0, 0, 255]}\n"
                    "  - {name: water, color: [1, 1, 1]}\n")
    with pytest.raises(ValueError, match="duplicate class names"):
        load_classes_yaml(path)
    path.write_text("classes: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_classes_yaml(path)


def test_equal_names_merge_clusters_into_one_class(tmp_path: Path):
    per_cluster = [ClassInfo("sand", (1, 1, 1)), ClassInfo("fish", (2, 2, 2)),
                   ClassInfo("sand", (3, 3, 3)), ClassInfo("reef", (4, 4, 4)),
                   ClassInfo("fish", (5, 5, 5))]
    classes, table = merge_by_name(per_cluster)
    assert classes == (ClassInfo("sand", (1, 1, 1)), ClassInfo("fish", (2, 2, 2)),
                       ClassInfo("reef", (4, 4, 4)))
    assert table == (0, 1, 0, 2, 1)
    assert check_cluster_classes(table, 5, 3) == table
    with pytest.raises(ValueError, match="must use each of the 4 classes"):
        check_cluster_classes(table, 5, 4)
    with pytest.raises(ValueError, match="of 5 entries for 6 clusters"):
        check_cluster_classes(table, 6, 3)
    path = save_classes_yaml(tmp_path / "names.yaml", per_cluster)
    assert load_classes_yaml(path, expected=5, repeats=True) == tuple(per_cluster)
    with pytest.raises(ValueError, match="duplicate class names"):
        load_classes_yaml(path)


def test_atomic_file_write_replaces_whole_file(tmp_path: Path):
    target = tmp_path / "sub" / "f.bin"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_atomic_path_discards_on_error(tmp_path: Path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while saving")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_atomic_dir_swaps_whole_folder(tmp_path: Path):
    out = tmp_path / "out"
    with atomic_dir(out) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(out) as staging:
        (staging / "b").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    with atomic_dir(out) as staging:
        (staging / "c").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path):
    mask = os.umask(0o022)
    os.umask(mask)
    write_bytes_atomic(tmp_path / "f", b"x")
    with atomic_path(tmp_path / "g") as tmp:
        tmp.write_bytes(b"y")
    with atomic_dir(tmp_path / "d") as staging:
        (staging / "a").write_text("1")
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~mask
