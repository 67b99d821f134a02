"""Reading ``bundle.json``'s fields: each parser checks type and bounds and every failure is one
line naming the field (docs/bundle.md §1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from uwstego.contract import GRAPH_INPUTS, GRAPH_OUTPUTS, graph_io
from uwstego.image_size import Size
from uwstego.novelty import NoveltyCalibration

# Bounds of bundle.json's sizes (docs/bundle.md §1): an 8K camera, a ViT input far past
# what any Jetson runs, DINO's patch sizes (8, 14, 16) with room.
MAX_CAMERA_SIDE = 8192
MAX_NETWORK_SIDE = 4096
MAX_PATCH_SIZE = 64
MAX_NAME_CHARS = 200


def field_value(data: Mapping[str, Any], key: str, parse: Any, name: str | None = None) -> Any:
    """``parse(data[key])`` with any failure reported as one line naming the field."""
    name = name or key
    if key not in data:
        raise ValueError(f"field {name!r} is missing")
    try:
        return parse(data[key])
    except (KeyError, TypeError, ValueError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, KeyError):
            detail = f"missing key {detail!r}"
        raise ValueError(f"field {name!r}: {detail}") from exc


def positive_int(value: Any) -> int:
    # bool is an int in Python and 1.5 would silently become 1: both are typos, not sizes.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def bounded_int(maximum: int) -> Any:
    def parse(value: Any) -> int:
        if positive_int(value) > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value
    return parse


def bounded_size(max_side: int) -> Any:
    side = bounded_int(max_side)

    def parse(value: Any) -> Size:
        value = mapping(value)
        unknown = sorted(map(str, set(value) - {"width", "height"}))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; expected width and height")
        return Size(side(value["width"]), side(value["height"]))
    return parse


def mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {value!r}")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ValueError(f"expected a non-empty string of at most {MAX_NAME_CHARS} characters, "
                         f"got {str(value)[:MAX_NAME_CHARS]!r}")
    return value


def check_declared_io(model: Mapping[str, Any], camera: Size,
                       outputs: tuple[str, ...] = GRAPH_OUTPUTS) -> None:
    """The shapes ``bundle.json`` lists for the graph must be the ones its camera size implies."""
    expected = graph_io(camera)
    for group, names in (("inputs", GRAPH_INPUTS), ("outputs", outputs)):
        listed = field_value(model, group, mapping, f"model.{group}")
        if sorted(listed) != sorted(names):
            raise ValueError(f"field 'model.{group}': lists {sorted(listed)}, the graph "
                             f"contract is {sorted(names)}")
        for name in names:
            shape = listed[name][1] if isinstance(listed[name], Sequence) \
                and len(listed[name]) == 2 else None
            if shape != expected[name][1]:
                raise ValueError(f"field 'model.{group}.{name}': shape {shape}, but camera "
                                 f"{camera} means {expected[name][1]}")


def novelty_fields(doc: Any) -> dict[str, Any]:
    """Bundles written before novelty existed have no ``novelty`` entry: novelty unavailable."""
    if doc is None:
        return {}
    doc = mapping(doc)
    unknown = doc.get("unknown_label", False)
    if not isinstance(unknown, bool):
        raise ValueError(f"unknown_label must be true or false, got {unknown!r}")
    return {"novelty": NoveltyCalibration.from_dict(mapping(doc["calibration"])),
            "unknown_label": unknown}
