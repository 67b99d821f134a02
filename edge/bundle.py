"""The deploy bundle: the one folder that export writes and the vehicle and replay read.

Layout::

    BUNDLE/
      bundle.json     schema version, sizes, classes, enhancement, provenance, sha256 of files
      model.onnx      the fused graph (see docs/ARCHITECTURE.md for its inputs and outputs)
      engines/        TensorRT plans built on the target (a cache: not checksummed)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.atomic import atomic_dir, write_json_atomic
from edge.classes import ClassInfo, check_class_count, classes_from_list, classes_to_list
from edge.contract import (
    ENHANCE_SHAPE,
    GRAPH_CONFIDENCE,
    GRAPH_ENHANCE,
    GRAPH_IMAGE,
    GRAPH_LABELS,
    GRAPH_NOVELTY,
    GRAPH_OUTPUTS,
    GRAPH_OUTPUTS_WITH_NOVELTY,
    image_shape,
    map_shape,
)
from edge.enhance import EnhanceSettings
from edge.image_size import Size
from edge.novelty import NoveltyCalibration

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
MODEL_FILE = "model.onnx"
ENGINE_DIR = "engines"


class BundleError(ValueError):
    """A bundle that is missing, partial, damaged or from an incompatible version."""


@dataclass(frozen=True)
class BundleMeta:
    camera: Size
    network: Size
    patch_size: int
    classes: tuple[ClassInfo, ...]
    enhancement: EnhanceSettings
    backbone: str
    provenance: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    opset: int = 17
    # The graph has a ``novelty`` output when calibrated (edge/novelty.py); ``unknown_label``:
    # its labels mark pixels beyond their cluster's threshold with UNKNOWN_LABEL.
    novelty: NoveltyCalibration | None = None
    unknown_label: bool = False

    def __post_init__(self) -> None:
        check_class_count(len(self.classes))
        if self.novelty is not None and self.novelty.num_clusters != len(self.classes):
            raise ValueError(f"novelty calibration of {self.novelty.num_clusters} clusters for "
                             f"{len(self.classes)} classes")
        if self.unknown_label and self.novelty is None:
            raise ValueError("unknown_label needs a novelty calibration")
        for name, size in (("network", self.network),):
            if size.width % self.patch_size or size.height % self.patch_size:
                raise ValueError(f"{name} size {size} is not a multiple of the patch size "
                                 f"{self.patch_size}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def graph_outputs(self) -> tuple[str, ...]:
        return GRAPH_OUTPUTS if self.novelty is None else GRAPH_OUTPUTS_WITH_NOVELTY

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "camera": self.camera.to_dict(),
            "network": self.network.to_dict(),
            "patch_size": self.patch_size,
            "num_classes": self.num_classes,
            "classes": classes_to_list(self.classes),
            "enhancement": self.enhancement.to_dict(),
            "enhancement_steps": {"host": self.enhancement.host_steps(),
                                  "graph": self.enhancement.graph_steps()},
            "backbone": self.backbone,
            "model": {
                "file": MODEL_FILE,
                "opset": self.opset,
                "inputs": {GRAPH_IMAGE: ["uint8", list(image_shape(self.camera))],
                           GRAPH_ENHANCE: ["float32", list(ENHANCE_SHAPE)]},
                "outputs": {GRAPH_LABELS: ["uint8", list(map_shape(self.camera))],
                            GRAPH_CONFIDENCE: ["float32", list(map_shape(self.camera))],
                            **({} if self.novelty is None else
                               {GRAPH_NOVELTY: ["float32", list(map_shape(self.camera))]})},
            },
            "novelty": None if self.novelty is None else {
                "calibration": self.novelty.to_dict(), "unknown_label": self.unknown_label},
            "provenance": dict(self.provenance),
            "validation": dict(self.validation),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BundleMeta:
        return cls(
            camera=Size.from_dict(data["camera"]),
            network=Size.from_dict(data["network"]),
            patch_size=int(data["patch_size"]),
            classes=classes_from_list(data["classes"]),
            enhancement=EnhanceSettings.from_dict(data["enhancement"]),
            backbone=str(data["backbone"]),
            provenance=dict(data.get("provenance", {})),
            validation=dict(data.get("validation", {})),
            opset=int(data["model"]["opset"]),
            **_novelty_fields(data.get("novelty")),
        )


def _novelty_fields(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """Bundles written before novelty existed have no ``novelty`` entry: novelty unavailable."""
    if doc is None:
        return {}
    return {"novelty": NoveltyCalibration.from_dict(doc["calibration"]),
            "unknown_label": bool(doc.get("unknown_label", False))}


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: BundleMeta
    checksums: Mapping[str, str]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def engine_dir(self) -> Path:
        return self.path / ENGINE_DIR

    @property
    def model_sha256(self) -> str:
        return self.checksums[MODEL_FILE]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(out_dir: str | Path, meta: BundleMeta,
                 files: Mapping[str, bytes | Path]) -> Bundle:
    """Write a complete bundle or nothing: staged in a sibling folder, then renamed into place.

    ``files`` maps bundle-relative names to contents (bytes) or files to copy; it must contain
    ``model.onnx``. An existing bundle at ``out_dir`` is replaced as a whole, with its engine
    cache, since engines built for the old graph are stale.
    """
    out_dir = Path(out_dir)
    if MODEL_FILE not in files:
        raise BundleError(f"a bundle needs {MODEL_FILE}; got files {sorted(files)}")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / BUNDLE_FILE).exists():
        raise BundleError(f"refusing to overwrite {out_dir}: it is a non-empty folder that is "
                          "not a bundle")
    with atomic_dir(out_dir) as staging:
        checksums = {}
        for name, content in sorted(files.items()):
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                shutil.copyfile(content, target)
            checksums[name] = sha256_file(target)
        doc = meta.to_dict()
        doc["files"] = checksums
        write_json_atomic(staging / BUNDLE_FILE, doc)
    return Bundle(out_dir, meta, checksums)


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Load and validate a bundle; every refusal names the file and the problem."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist or is not a folder")
    doc_path = path / BUNDLE_FILE
    if not doc_path.is_file():
        raise BundleError(f"{doc_path} is missing: not a bundle, or an interrupted write")
    try:
        doc = json.loads(doc_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{doc_path} is not valid JSON ({exc}): the bundle is damaged") from exc
    if not isinstance(doc, dict):
        raise BundleError(f"{doc_path}: expected a JSON object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{doc_path}: schema version {version!r}, this uwstego reads "
                          f"version {SCHEMA_VERSION}; re-export the bundle")
    try:
        meta = BundleMeta.from_dict(doc)
        checksums = {str(k): str(v) for k, v in doc["files"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{doc_path}: invalid or missing field ({exc!r})") from exc
    if MODEL_FILE not in checksums:
        raise BundleError(f"{doc_path}: lists no {MODEL_FILE}")
    for name, expected in checksums.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file} is missing (listed in {BUNDLE_FILE}): partial bundle")
        if verify:
            actual = sha256_file(file)
            if actual != expected:
                raise BundleError(f"{file}: checksum mismatch (bundle.json says "
                                  f"{expected[:12]}..., file is {actual[:12]}...): "
                                  "the file is damaged or was replaced")
    return Bundle(path, meta, checksums)
