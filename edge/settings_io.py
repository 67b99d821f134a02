"""Saved settings: frozen dataclasses read back from JSON/YAML files, strictly and bounded.

A settings file is small, so reading one is bounded before any parser sees it: a size cap (the
parsers use 20-25x the file's size in memory), a nesting-depth cap (Python's parsers recurse and
end in RecursionError) and, for YAML, no aliases (nested anchors expand exponentially: the
"billion laughs"). See docs/bundle.md §4.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

T = TypeVar("T")

# Far above any settings file the project writes (a bundle.json with 255 calibrated classes is
# about 100 KiB), far below what would strain the vehicle's memory.
MAX_SETTINGS_BYTES = 1 << 20
MAX_NESTING = 32

# A JSON string (escapes included), and anything that is not a bracket: removed before the depth
# is counted, so that brackets inside strings do not count.
_JSON_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def from_dict_strict(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """``cls(**data)``, refusing keys the dataclass does not know (a typo or a newer version).

    JSON has no tuples, so list values come back as tuples, as frozen settings hold them.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected an object of named values, got "
                         f"{type(data).__name__} {_short(data)}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def read_bounded(path: str | Path, what: str, max_bytes: int = MAX_SETTINGS_BYTES) -> bytes:
    """The bytes of ``path``, refused (before reading them all) when over ``max_bytes``."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: {what} is over {max_bytes} bytes: not a file uwstego wrote")
    return data


def parse_json_bounded(text: str | bytes, what: str, max_depth: int = MAX_NESTING) -> Any:
    """``json.loads`` after checking that no array or object nests deeper than ``max_depth``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                             ) from exc
    brackets = _NOT_BRACKETS.sub("", _JSON_STRINGS.sub("", text)).encode("ascii")
    opens = np.frombuffer(brackets, dtype=np.uint8)
    opens = (opens == ord("[")) | (opens == ord("{"))
    if opens.size and int(np.cumsum(np.where(opens, 1, -1)).max()) > max_depth:
        raise ValueError(f"{what} nests deeper than {max_depth} levels: not a file uwstego "
                         "wrote")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from exc


def read_json_bounded(path: str | Path, what: str, max_bytes: int = MAX_SETTINGS_BYTES,
                      max_depth: int = MAX_NESTING) -> Any:
    """A JSON file read with the size and depth caps; every failure is one ValueError line."""
    return parse_json_bounded(read_bounded(path, what, max_bytes), f"{path}: {what}",
                              max_depth)


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """:func:`read_json_bounded` of a file that must hold one JSON object."""
    doc = read_json_bounded(path, what)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: {what} must be a JSON object, got {type(doc).__name__}")
    return doc


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: ``*name`` is refused where it would be expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} refused (aliases are not accepted: write the "
                "value out)", event.start_mark)
        return super().compose_node(parent, index)


def read_yaml_bounded(path: str | Path, what: str, max_bytes: int = MAX_SETTINGS_BYTES) -> Any:
    """A YAML file read with the size cap, without aliases; every failure is one ValueError."""
    data = read_bounded(path, what, max_bytes)
    try:
        return yaml.load(data, Loader=_NoAliasLoader)  # a SafeLoader, minus aliases
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path}: {what} is not valid YAML ({detail})") from exc
    except RecursionError:
        raise ValueError(f"{path}: {what} nests too deep: not a file uwstego wrote") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
