"""Class names and colours: defaults for unnamed clusters, the small YAML people edit, and the
cluster -> class table that merges clusters given the same name (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from uwstego.atomic import write_text_atomic
from uwstego.coverage import SEPARATOR
from uwstego.settings_io import read_yaml_bounded

MAX_CLASSES = 255  # labels travel as uint8 (mono8) and 255 is kept free for "ignore"


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color: tuple[int, int, int]

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"class name must be a non-empty string, got {self.name!r}")
        if SEPARATOR in self.name:
            raise ValueError(f"class name {self.name!r} contains {SEPARATOR!r}, which separates "
                             "the names in coverage messages")
        if len(self.color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255
                                           for c in self.color):
            raise ValueError(f"class {self.name!r}: colour must be 3 ints in 0..255, "
                             f"got {self.color!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "color": list(self.color)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassInfo:
        try:
            return cls(name=data["name"], color=tuple(int(c) for c in data["color"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"class entry {data!r} needs 'name' and 'color' [r, g, b]") from exc


def default_colors(k: int) -> list[tuple[int, int, int]]:
    """Well-separated colours: golden-ratio hue steps at two lightness levels."""
    colors = []
    for i in range(k):
        hue = (i * 0.618033988749895) % 1.0
        light = 0.5 if i % 2 == 0 else 0.68
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def default_classes(k: int) -> tuple[ClassInfo, ...]:
    check_class_count(k)
    return tuple(ClassInfo(f"cluster_{i}", c) for i, c in enumerate(default_colors(k)))


def check_class_count(k: int) -> None:
    if not 1 <= k <= MAX_CLASSES:
        raise ValueError(f"{k} classes: labels are uint8, so 1..{MAX_CLASSES} classes are "
                         "supported")


def classes_to_list(classes: Sequence[ClassInfo]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in classes]


def classes_from_list(items: Sequence[dict[str, Any]],
                      repeats: bool = False) -> tuple[ClassInfo, ...]:
    """Classes from their dicts; ``repeats`` allows equal names (one entry per cluster, where
    equal names merge clusters), otherwise names must be unique."""
    classes = tuple(ClassInfo.from_dict(d) for d in items)
    check_class_count(len(classes))
    names = [c.name for c in classes]
    if not repeats and len(set(names)) != len(names):
        raise ValueError(f"duplicate class names in {names}")
    return classes


def merge_by_name(per_cluster: Sequence[ClassInfo]
                  ) -> tuple[tuple[ClassInfo, ...], tuple[int, ...]]:
    """``(classes, class index per cluster)``: clusters with the same name become one class,
    in order of first appearance, with the colour of its first cluster (over-cluster, then
    merge: docs/stego.md §7)."""
    classes: list[ClassInfo] = []
    index: dict[str, int] = {}
    table = []
    for cls in per_cluster:
        if cls.name not in index:
            index[cls.name] = len(classes)
            classes.append(cls)
        table.append(index[cls.name])
    return tuple(classes), tuple(table)


def check_cluster_classes(table: Sequence[int], clusters: int,
                          classes: int) -> tuple[int, ...]:
    """A cluster -> class table: one class index per cluster, every class used by one."""
    table = tuple(int(c) for c in table)
    if len(table) != clusters:
        raise ValueError(f"cluster -> class table of {len(table)} entries for {clusters} "
                         "clusters")
    if sorted(set(table)) != list(range(classes)):
        raise ValueError(f"cluster -> class table {list(table)} must use each of the "
                         f"{classes} classes")
    return table


def save_classes_yaml(path: str | Path, classes: Sequence[ClassInfo]) -> Path:
    text = yaml.safe_dump({"classes": classes_to_list(classes)}, sort_keys=False)
    return write_text_atomic(path, text)


def load_classes_yaml(path: str | Path, expected: int | None = None,
                      repeats: bool = False) -> tuple[ClassInfo, ...]:
    """Read the names/colours YAML; ``expected`` is the cluster count it must describe;
    ``repeats``: equal names are allowed (they merge clusters)."""
    path = Path(path)
    data = read_yaml_bounded(path, "class names")
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{path}: expected a mapping with a 'classes' list")
    try:
        classes = classes_from_list(data["classes"], repeats)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if expected is not None and len(classes) != expected:
        raise ValueError(f"{path}: names {len(classes)} classes but the model has {expected}")
    return classes
