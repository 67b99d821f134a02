"""The node's parameters: one table with defaults, descriptors and validation.

Three kinds (``ParamSpec.applies``):
- ``start``: read-only, read once when the process starts (``autostart``, the diagnostics period);
- ``configure``: what shapes the engine, the subscriptions and the publishers (bundle, backend,
  transport, QoS, ...). They may be set only while the node is not active and take effect at the
  next ``configure`` (``activate`` for the subscriptions): deactivate, set ``bundle``, clean up and
  configure again to swap the model without restarting the process;
- ``runtime``: publishing switches, overlay alpha, rate limit, caps and diagnostics thresholds,
  applied at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from uwstego.backends import BACKEND_NAMES, CPU_GRAPH_CHOICES, PRECISIONS
from uwstego.contract import DEFAULT_INPUT_QOS, OUTPUT_QOS, QOS_PROFILES
from uwstego.image_size import Size
from uwstego.objects import ObjectSettings, parse_class_list

TRANSPORTS = ("raw", "compressed")
# max_pixels:=0 accepts every camera up to 4K UHD, and up to this many times the bundle's camera
# size when that is more: a common camera is never refused by default, a decode bomb still is.
ALWAYS_ACCEPTED = Size(3840, 2160)
CAMERA_SIZE_FACTOR = 4


@dataclass(frozen=True)
class NodeSettings:
    bundle: str = ""
    trusted_keys: tuple[str, ...] = ()
    backend: str = "auto"
    precision: str = "fp16"
    engine_cache_dir: str = ""
    threads: int = 0
    cpu_graph: str = "auto"
    transport: str = "compressed"
    qos: str = DEFAULT_INPUT_QOS
    qos_depth: int = 5
    output_qos: str = "reliable" if OUTPUT_QOS.reliability == "reliable" else "sensor_data"
    output_qos_depth: int = OUTPUT_QOS.depth
    autostart: bool = True
    use_camera_info: bool = True
    publish_overlay: bool = False
    overlay_alpha: float = 0.5
    publish_confidence: bool = False
    publish_novelty: bool = False
    max_rate: float = 0.0
    max_pixels: int = 0
    reduced_decode: bool = False
    diagnostics_period: float = 1.0
    stale_after: float = 3.0
    expected_rate: float = 0.0
    warn_drop_ratio: float = 0.5
    warn_bad_ratio: float = 0.0
    warn_novel_ratio: float = 0.1
    object_classes: str = ""
    object_min_area: int = ObjectSettings.min_area
    object_max_missed: int = ObjectSettings.max_missed
    object_match_iou: float = ObjectSettings.match_iou
    object_match_distance: float = ObjectSettings.match_distance

    def with_values(self, values: Mapping[str, Any]) -> NodeSettings:
        """A copy with ``values`` applied, or ValueError naming the first invalid one."""
        clean = {}
        for name, value in values.items():
            reason = check_value(name, value)
            if reason:
                raise ValueError(f"parameter {name!r}: {reason}")
            clean[name] = float(value) if isinstance(getattr(self, name), float) \
                else tuple(value) if isinstance(getattr(self, name), tuple) else value
        return dataclasses.replace(self, **clean)


@dataclass(frozen=True)
class ParamSpec:
    description: str
    applies: str = "configure"  # "start" | "configure" | "runtime"
    choices: tuple[str, ...] = ()
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None
    check: Callable[[Any], str | None] | None = None


def _bundle_given(value: Any) -> str | None:
    return None if value else "is required: the path of a deploy bundle folder"


def _key_paths(value: Any) -> str | None:
    return None if all(value) else "holds an empty path; give PEM public key files"


def _class_list(value: Any) -> str | None:
    try:
        ObjectSettings(classes=parse_class_list(value))
    except ValueError as exc:
        return str(exc)
    return None


SPECS: dict[str, ParamSpec] = {
    "bundle": ParamSpec("deploy bundle folder (model.onnx + bundle.json)", check=_bundle_given),
    "trusted_keys": ParamSpec("Ed25519 public keys (PEM files); when given, only a bundle signed "
                              "by one of them loads (docs/bundle.md); empty = signatures not "
                              "checked", check=_key_paths),
    "backend": ParamSpec("inference backend; auto tries TensorRT, then ONNX Runtime CUDA, "
                         "then CPU", choices=BACKEND_NAMES),
    "precision": ParamSpec("TensorRT engine precision", choices=PRECISIONS),
    "engine_cache_dir": ParamSpec("where TensorRT plans (and ONNX Runtime's CPU graph choice) "
                                  "are cached; empty = <bundle>/engines"),
    "threads": ParamSpec("ONNX Runtime threads; 0 = one per core (docs/deploy.md §11)",
                         int_range=(0, 256)),
    "cpu_graph": ParamSpec("ONNX Runtime CPU graph: auto (the bundle's fastest on this machine, "
                           "timed once and cached), plain or fused", choices=CPU_GRAPH_CHOICES),
    "transport": ParamSpec("raw: subscribe 'image' (sensor_msgs/Image); compressed: "
                           "'image/compressed' (sensor_msgs/CompressedImage)",
                           choices=TRANSPORTS),
    "qos": ParamSpec("input QoS: sensor_data (best effort, keep last) or reliable",
                     choices=QOS_PROFILES),
    "qos_depth": ParamSpec("input queue depth (the node keeps only the newest frame anyway)",
                           int_range=(1, 100)),
    "output_qos": ParamSpec("output QoS: reliable (every subscriber gets every result) or "
                            "sensor_data (best effort)", choices=QOS_PROFILES),
    "output_qos_depth": ParamSpec("output queue depth", int_range=(1, 100)),
    "autostart": ParamSpec("configure and activate at start (a plain `ros2 run` segments at "
                           "once); false: wait for a lifecycle manager", applies="start"),
    "use_camera_info": ParamSpec("subscribe 'camera_info' and republish it on ~/camera_info"),
    "publish_overlay": ParamSpec("publish ~/overlay (rgb8 frame with the labels blended in)",
                                 applies="runtime"),
    "overlay_alpha": ParamSpec("overlay weight of the label colours (0 = frame only)",
                               applies="runtime", float_range=(0.0, 1.0)),
    "publish_confidence": ParamSpec("publish ~/confidence (32FC1 cosine similarity)",
                                    applies="runtime"),
    "publish_novelty": ParamSpec("publish ~/novelty (mono8: 0 = typical of its class, 255 = "
                                 "beyond every training pixel; bundles with novelty only)",
                                 applies="runtime"),
    "max_rate": ParamSpec("at most this many inferences per second; 0 = as fast as possible",
                          applies="runtime", float_range=(0.0, 1000.0)),
    "max_pixels": ParamSpec(
        "refuse frames declaring more pixels than this, before decoding (a 4 KB JPEG can "
        f"declare gigapixels); 0 = {ALWAYS_ACCEPTED} (4K UHD) or {CAMERA_SIZE_FACTOR} x the "
        "bundle's camera size, whichever is more. Set it above width x height of a larger "
        "camera: a frame costs about 10 bytes per pixel while it is decoded and resized",
        applies="runtime", int_range=(0, 2**30)),
    "reduced_decode": ParamSpec("decode JPEGs at 1/2, 1/4 or 1/8 scale when that still gives at "
                                "least the bundle's camera size (much cheaper than a full "
                                "decode and a resize); outputs then come at the decoded size",
                                applies="runtime"),
    "diagnostics_period": ParamSpec("seconds between /diagnostics messages",
                                    applies="start", float_range=(0.05, 60.0)),
    "stale_after": ParamSpec("diagnostics are STALE when no frame arrived for this many seconds",
                             applies="runtime", float_range=(0.1, 3600.0)),
    "expected_rate": ParamSpec("diagnostics WARN when the input rate (Hz) falls more than 10% "
                               "below this; 0 = not checked", applies="runtime",
                               float_range=(0.0, 1000.0)),
    "warn_drop_ratio": ParamSpec("diagnostics WARN when more than this fraction of the frames "
                                 "of a period is dropped (newest-frame policy)",
                                 applies="runtime", float_range=(0.0, 1.0)),
    "warn_bad_ratio": ParamSpec("diagnostics WARN when more than this fraction of the frames of "
                                "a period is bad (0 = any bad frame)", applies="runtime",
                                float_range=(0.0, 1.0)),
    "warn_novel_ratio": ParamSpec("diagnostics WARN when more than this fraction of the pixels "
                                  "of a period is beyond its class's novelty threshold (the "
                                  "scene leaves what the model knows)", applies="runtime",
                                  float_range=(0.0, 1.0)),
    "object_classes": ParamSpec("comma-separated class names of the bundle whose connected "
                                "regions are objects, published on ~/objects and "
                                "~/objects/markers with track ids; empty = none",
                                check=_class_list),
    "object_min_area": ParamSpec("objects smaller than this many pixels are left out",
                                 applies="runtime", int_range=(1, 2**30)),
    "object_max_missed": ParamSpec("frames an object may go unseen and keep its track id",
                                   applies="runtime", int_range=(0, 1000)),
    "object_match_iou": ParamSpec("bounding-box overlap (IoU, after the track's motion) that "
                                  "continues a track", applies="runtime",
                                  float_range=(0.01, 1.0)),
    "object_match_distance": ParamSpec("or else a centroid within this fraction of the image "
                                       "diagonal continues a track", applies="runtime",
                                       float_range=(0.0, 1.0)),
}
DEFAULTS = NodeSettings()


def pixel_cap(max_pixels: int, camera: Size) -> int:
    """The pixel count above which frames are refused: ``max_pixels``, or its default (0)."""
    return max_pixels or max(ALWAYS_ACCEPTED.pixels, CAMERA_SIZE_FACTOR * camera.pixels)


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None if it is."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter; known: {', '.join(SPECS)}"
    expected = type(getattr(DEFAULTS, name))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is tuple:  # string arrays arrive as lists
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return f"expected a list of strings, got {value!r}"
        value = tuple(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return f"expected a {expected.__name__}, got {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{value!r} is not one of {', '.join(spec.choices)}"
    for bounds in (spec.float_range, spec.int_range):
        if bounds and not bounds[0] <= value <= bounds[1]:
            return f"{value} is outside [{bounds[0]}, {bounds[1]}]"
    return spec.check(value) if spec.check else None


_WHEN = {"start": " (read at start)",
         "configure": " (set while not active; applies at the next configure)",
         "runtime": ""}


def _descriptor(name: str, spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=spec.description + _WHEN[spec.applies],
                               read_only=spec.applies == "start")
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.float_range:
        # `max_rate:=5` is an integer on the command line: accept it, check_value converts it.
        desc.dynamic_typing = True
        desc.floating_point_range = [FloatingPointRange(from_value=spec.float_range[0],
                                                        to_value=spec.float_range[1])]
    if spec.int_range:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0],
                                           to_value=spec.int_range[1], step=1)]
    return desc


def declare_settings(node: Node) -> NodeSettings:
    """Declare every parameter on ``node`` and return the validated start-up settings."""
    values = {}
    for name, spec in SPECS.items():
        default = getattr(DEFAULTS, name)
        # An empty list would be declared as a byte array: string arrays are declared by type.
        param = node.declare_parameter(name, Parameter.Type.STRING_ARRAY if default == () else
                                       default, _descriptor(name, spec))
        values[name] = () if param.value is None else param.value
    return DEFAULTS.with_values(values)


def updates_from(params: list[Parameter]) -> dict[str, Any]:
    return {p.name: p.value for p in params if p.name in SPECS}


def refused_while_active(updates: Mapping[str, Any]) -> str | None:
    """Why ``updates`` cannot be applied to an active node, or None if they can."""
    locked = sorted(n for n in updates if SPECS[n].applies == "configure")
    if not locked:
        return None
    return (f"{', '.join(locked)} can only change while the node is not active: deactivate it "
            "(and clean up, for the engine), set, then configure and activate again")
