"""What a graph file records about itself: its ONNX ``metadata_props``, read without onnx.

``edge`` does not depend on the onnx package, and loading a session only to read a few strings
would cost the graph's size in memory, so the top level of the ``ModelProto`` is walked in the
protobuf wire format: every field but ``metadata_props`` (field 14, ``StringStringEntryProto``
with ``key`` = 1 and ``value`` = 2) is skipped by its length without being read. See
docs/bundle.md §2.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from uwstego.contract import GRAPH_SETTINGS_KEY
from uwstego.settings_io import MAX_SETTINGS_BYTES, parse_json_bounded

log = logging.getLogger(__name__)

_METADATA_PROPS = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_MAX_ENTRIES = 1000


def _varint(f: BinaryIO) -> int:
    value, shift = 0, 0
    while True:
        byte = f.read(1)
        if not byte:
            raise ValueError("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(f: BinaryIO, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, wire type, value or length)`` of each field up to offset ``end``; the
    payload of a length-delimited field is left for the caller to read or skip."""
    while f.tell() < end:
        tag = _varint(f)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            yield number, wire, _varint(f)
        elif wire in (_FIXED64, _FIXED32):
            f.seek(8 if wire == _FIXED64 else 4, os.SEEK_CUR)
            yield number, wire, 0
        elif wire == _LENGTH:
            length = _varint(f)
            if f.tell() + length > end:
                raise ValueError(f"field {number} runs past the end of the file")
            yield number, wire, length
        else:
            raise ValueError(f"field {number} has wire type {wire}, which ONNX does not use")
    if f.tell() != end:
        raise ValueError("the last field runs past the end of the file")


def _entry(data: bytes) -> tuple[str, str]:
    buf, key, value = io.BytesIO(data), "", ""
    for number, wire, length in _fields(buf, len(data)):
        if wire == _LENGTH:
            text = buf.read(length).decode("utf-8")
            key, value = (text, value) if number == 1 else (key, text) if number == 2 \
                else (key, value)
    return key, value


def read_graph_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file ``path``; ValueError when it is not one."""
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(0)
        try:
            for number, wire, length in _fields(f, end):
                if wire != _LENGTH:
                    continue
                if number != _METADATA_PROPS:
                    f.seek(length, os.SEEK_CUR)
                    continue
                if length > MAX_SETTINGS_BYTES or len(out) >= _MAX_ENTRIES:
                    raise ValueError("metadata_props larger than any uwstego graph's")
                key, value = _entry(f.read(length))
                out[key] = value
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: metadata_props is not UTF-8 text: not an ONNX graph"
                             ) from exc
        except ValueError as exc:
            raise ValueError(f"{path}: not an ONNX graph ({exc})") from exc
    return out


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, Mapping):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): doc}


def _same(a: Any, b: Any) -> bool:
    # true == 1 in Python: a bool field must match a bool.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def check_recorded_settings(settings: Mapping[str, Any], metadata: Mapping[str, str],
                            graph: Path) -> None:
    """Refuse (ValueError) ``settings`` (from bundle.json) that differ from those the graph
    was exported with; graphs exported before they were recorded load with a warning."""
    recorded_text = metadata.get(GRAPH_SETTINGS_KEY)
    if recorded_text is None:
        log.warning("%s records no bundle settings (%s; exported by an older uwstego): "
                    "bundle.json's enhancement and sizes are not checked against the graph",
                    graph, GRAPH_SETTINGS_KEY)
        return
    recorded = _flat(parse_json_bounded(recorded_text, f"{graph}: {GRAPH_SETTINGS_KEY}"))
    ours = _flat(settings)
    for key in sorted(set(ours) | set(recorded)):
        if key not in recorded or key not in ours or not _same(ours[key], recorded[key]):
            raise ValueError(
                f"field {key!r} says {_json(ours.get(key))}, the graph "
                f"{graph.name} was exported with {_json(recorded.get(key))}: bundle.json was "
                "edited; restore it or re-export the bundle")


def _json(value: Any) -> str:
    return json.dumps(value)
