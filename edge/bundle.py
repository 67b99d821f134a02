"""The deploy bundle: the one folder that export writes and the vehicle and replay read.

Layout::

    BUNDLE/
      bundle.json     schema version, sizes, classes, enhancement, provenance, sha256 of files
      model.onnx      the fused graph (see docs/ARCHITECTURE.md for its inputs and outputs)
      model_int8.onnx optional: the same graph with INT8 QDQ nodes (``export-trt --int8``),
                      listed in bundle.json's files like every other file
      model_fused.onnx, model_int8_dynamic.onnx
                      optional: ONNX Runtime's CPU variants of both (edge/cpu_graphs.py)
      engines/        TensorRT plans built on the target (a cache: not checksummed)
      bundle.sig      optional: an Ed25519 signature over bundle.json (edge/signing.py)

Every field of ``bundle.json`` is checked with bounds, the settings that change the graph's
output are cross-checked against the copy export records in the graph itself, and the file is
read with a size and depth cap: see docs/bundle.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uwstego.atomic import atomic_dir, recover_dir, write_bytes_atomic, write_json_atomic
from uwstego.bundle_fields import (
    MAX_CAMERA_SIDE,
    MAX_NETWORK_SIDE,
    MAX_PATCH_SIZE,
    bounded_int,
    bounded_size,
    check_declared_io,
    field_value,
    mapping,
    novelty_fields,
    positive_int,
    text,
)
from uwstego.classes import ClassInfo, check_class_count, classes_from_list, classes_to_list
from uwstego.contract import (
    GRAPH_CLASSES_KEY,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    GRAPH_OUTPUTS_WITH_NOVELTY,
    graph_io,
)
from uwstego.cpu_graphs import (
    CPU_GRAPHS,
    GRAPH_FILES,
    INT8_MODEL_FILE,
    MODEL_FILE,
    CpuGraph,
    graph_precision,
)
from uwstego.enhance import EnhanceSettings
from uwstego.errors import UwstegoError
from uwstego.graph_metadata import check_recorded_settings, read_graph_metadata
from uwstego.image_size import Size
from uwstego.novelty import NoveltyCalibration
from uwstego.settings_io import parse_json_bounded, read_bounded
from uwstego.signing import (
    SIGNATURE_FILE,
    SignatureError,
    key_id,
    load_private_key,
    load_public_keys,
    sign,
)
from uwstego.signing import verify as verify_signature

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
ENGINE_DIR = "engines"

log = logging.getLogger(__name__)


class BundleError(UwstegoError, ValueError):
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

    def graph_settings(self) -> dict[str, Any]:
        """The settings that change what the graph outputs for a frame (the host-stage
        enhancement included): export records them in the graph's metadata
        (:data:`~uwstego.contract.GRAPH_SETTINGS_KEY`) and :func:`load_bundle` refuses a
        ``bundle.json`` that disagrees. Class names and colours are free to edit."""
        novelty = None if self.novelty is None else hashlib.sha256(json.dumps(
            self.novelty.to_dict(), sort_keys=True).encode()).hexdigest()
        return {"camera": self.camera.to_dict(), "network": self.network.to_dict(),
                "patch_size": self.patch_size, "num_classes": self.num_classes,
                "enhancement": self.enhancement.to_dict(), "backbone": self.backbone,
                "novelty_sha256": novelty, "unknown_label": self.unknown_label}

    def to_dict(self) -> dict[str, Any]:
        io = {name: list(spec) for name, spec in graph_io(self.camera).items()}
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
                "inputs": {name: io[name] for name in GRAPH_INPUTS},
                "outputs": {name: io[name] for name in self.graph_outputs},
            },
            "novelty": None if self.novelty is None else {
                "calibration": self.novelty.to_dict(), "unknown_label": self.unknown_label},
            "provenance": dict(self.provenance),
            "validation": dict(self.validation),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BundleMeta:
        """Read ``bundle.json``; a bad value raises ValueError naming its field."""
        camera = field_value(data, "camera", bounded_size(MAX_CAMERA_SIDE))
        patch = field_value(data, "patch_size", bounded_int(MAX_PATCH_SIZE))
        classes = field_value(data, "classes", classes_from_list)
        declared = field_value(data, "num_classes", positive_int)
        if declared != len(classes):
            raise ValueError(f"field 'num_classes': {declared}, but 'classes' lists "
                             f"{len(classes)}")
        model = field_value(data, "model", mapping)
        if model.get("file", MODEL_FILE) != MODEL_FILE:
            raise ValueError(f"field 'model.file': {model['file']!r}, expected {MODEL_FILE!r}")
        novelty = field_value({"novelty": None, **data}, "novelty", novelty_fields)
        if novelty and novelty["novelty"].num_clusters != len(classes):
            raise ValueError(f"field 'novelty': calibration of {novelty['novelty'].num_clusters} "
                             f"clusters, but 'classes' lists {len(classes)}")
        check_declared_io(model, camera, GRAPH_OUTPUTS_WITH_NOVELTY if novelty
                           else GRAPH_OUTPUTS)
        fields = dict(
            camera=camera,
            network=field_value(data, "network", bounded_size(MAX_NETWORK_SIDE)),
            patch_size=patch,
            classes=classes,
            enhancement=field_value(data, "enhancement", EnhanceSettings.from_dict),
            backbone=field_value(data, "backbone", text),
            provenance=dict(field_value({"provenance": {}, **data}, "provenance", mapping)),
            validation=dict(field_value({"validation": {}, **data}, "validation", mapping)),
            opset=field_value(model, "opset", bounded_int(1000), "model.opset"),
            **novelty,
        )
        try:
            return cls(**fields)
        except ValueError as exc:  # the one rule across fields: network size vs patch size
            raise ValueError(f"field 'network': {exc}") from exc


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

    def graph_file(self, precision: str) -> str:
        """The bundle file a runtime at ``precision`` loads: the INT8 QDQ graph for ``int8``,
        the FP32 graph otherwise (FP16 engines are built from it)."""
        if precision != "int8":
            return MODEL_FILE
        if INT8_MODEL_FILE not in self.checksums:
            raise BundleError(f"bundle {self.path} has no INT8 graph ({INT8_MODEL_FILE}): "
                              "re-export it with export-trt --int8")
        return INT8_MODEL_FILE

    def graph_path(self, precision: str) -> Path:
        return self.path / self.graph_file(precision)

    def cpu_graphs(self, precision: str) -> list[CpuGraph]:
        """The ONNX Runtime CPU graphs this bundle holds for ``precision``, plain first."""
        self.graph_file(precision)  # a missing INT8 graph is refused with its fix
        return [g for g in CPU_GRAPHS if g.file in self.checksums
                and g.precision == graph_precision(precision)]

    def graph_sha256(self, precision: str) -> str:
        return self.checksums[self.graph_file(precision)]


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


def load_bundle(path: str | Path, verify: bool = True,
                trusted_keys: Sequence[str | Path] = ()) -> Bundle:
    """Load and validate a bundle; every refusal names the file and the problem.

    Every name in ``files`` must lie inside the bundle folder (no absolute paths, no ``..``, no
    symlink out): all of them are checked before any file is opened or hashed. The settings
    that change the graph's output must be those recorded in the graph (docs/bundle.md). With
    ``trusted_keys`` (PEM public keys) the bundle must carry a signature by one of them
    (``bundle.sig``), and every checksum is verified whatever ``verify`` says.
    """
    path = Path(path)
    try:
        trusted = load_public_keys(trusted_keys) if trusted_keys else {}
    except SignatureError as exc:
        raise BundleError(str(exc)) from exc
    try:
        # A write killed between the two renames of atomic_dir's fallback; stale copies are
        # left to the next write, as they may belong to one in progress.
        recover_dir(path, remove_stale=False)
    except OSError as exc:
        log.warning("%s: could not put back an interrupted write's previous bundle (%s)", path,
                    exc)
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist or is not a folder")
    doc_path = path / BUNDLE_FILE
    if not doc_path.is_file():
        raise BundleError(f"{doc_path} is missing: not a bundle, or an interrupted write")
    try:
        raw = read_bounded(doc_path, BUNDLE_FILE)
        signer = verify_signature(raw, path / SIGNATURE_FILE, trusted) if trusted else None
        doc = parse_json_bounded(raw, str(doc_path))
    except SignatureError as exc:
        raise BundleError(str(exc)) from exc
    except ValueError as exc:
        raise BundleError(f"{exc}: the bundle is damaged") from exc
    if not isinstance(doc, dict):
        raise BundleError(f"{doc_path}: expected a JSON object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{doc_path}: schema version {version!r}, this uwstego reads "
                          f"version {SCHEMA_VERSION}; re-export the bundle")
    try:
        meta = BundleMeta.from_dict(doc)
        files = field_value(doc, "files", mapping)
        checksums = {str(k): str(v) for k, v in files.items()}
    except ValueError as exc:
        raise BundleError(f"{doc_path}: {exc}") from exc
    if MODEL_FILE not in checksums:
        raise BundleError(f"{doc_path}: lists no {MODEL_FILE}")
    for name in checksums:
        _check_inside(path, name, doc_path)
    for name, expected in checksums.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file} is missing (listed in {BUNDLE_FILE}): partial bundle")
        if verify or trusted:
            actual = sha256_file(file)
            if actual != expected:
                raise BundleError(f"{file}: checksum mismatch (bundle.json says "
                                  f"{expected[:12]}..., file is {actual[:12]}...): "
                                  "the file is damaged or was replaced")
    for name in (n for n in GRAPH_FILES if n in checksums):
        _check_graph_settings(meta, path / name, doc_path)
    if signer:
        log.info("bundle %s: signature by trusted key %s verified", path, signer)
    return Bundle(path, meta, checksums)


def _check_graph_settings(meta: BundleMeta, graph: Path, doc_path: Path) -> None:
    try:
        metadata = read_graph_metadata(graph)
    except ValueError as exc:
        # ONNX Runtime says the same, in its words, when the graph is opened.
        log.warning("cannot read the metadata of %s (%s): bundle.json is not checked against "
                    "it", graph, exc)
        return
    try:
        check_recorded_settings(meta.graph_settings(), metadata, graph)
    except ValueError as exc:
        raise BundleError(f"{doc_path}: {exc}") from exc


def sign_bundle(path: str | Path, key_path: str | Path) -> str:
    """Sign the bundle at ``path`` with the Ed25519 private key in ``key_path`` (writes
    ``bundle.sig``); the bundle is loaded and verified first, as only a sound bundle should be
    vouched for. Returns the signing key's id."""
    key = load_private_key(key_path)
    bundle = load_bundle(path)
    document = (bundle.path / BUNDLE_FILE).read_bytes()
    write_bytes_atomic(bundle.path / SIGNATURE_FILE, sign(document, key))
    signer = key_id(key.public_key())
    log.info("signed bundle %s with key %s", bundle.path, signer)
    return signer


def _check_inside(root: Path, name: str, doc_path: Path) -> None:
    """Refuse a ``files`` entry that names anything outside the bundle folder."""
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise BundleError(f"{doc_path}: field 'files' names {name!r}, which is not a path "
                          "inside the bundle folder: refused")
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise BundleError(f"{doc_path}: field 'files' entry {name!r} is a link to {target}, "
                          "outside the bundle folder: refused")


def check_graph(bundle: Bundle, model: Path, inputs: Mapping[str, Sequence[Any]],
                outputs: Mapping[str, Sequence[Any]], metadata: Mapping[str, str]) -> None:
    """Check ``bundle.json`` against the graph a runtime loaded from ``model`` (the bundle's
    ``model.onnx`` or its INT8 graph).

    ``inputs``/``outputs`` map the graph's tensor names to their shapes and ``metadata`` is the
    model's metadata (ONNX ``metadata_props``). The number of classes is checked against
    :data:`~uwstego.contract.GRAPH_CLASSES_KEY`, which export writes into the graph file from the
    centroid tensor it bakes in, so it is covered by the graph's checksum and cannot drift from
    the graph; graphs exported before it existed are loaded with a warning.
    """
    missing = ([n for n in GRAPH_INPUTS if n not in inputs]
               + [n for n in bundle.meta.graph_outputs if n not in outputs])
    if missing:
        raise BundleError(f"{model}: graph lacks {missing}; it has inputs {sorted(inputs)} and "
                          f"outputs {sorted(outputs)}")
    expected = graph_io(bundle.meta.camera)
    for kind, tensors in (("input", inputs), ("output", outputs)):
        for name, shape in tensors.items():
            if name in expected and list(shape) != expected[name][1]:
                raise BundleError(f"{model}: {kind} {name!r} has shape {list(shape)}, but "
                                  f"bundle.json field 'camera' {bundle.meta.camera} means "
                                  f"{expected[name][1]}")
    recorded = metadata.get(GRAPH_CLASSES_KEY)
    if recorded is None:
        log.warning("%s records no class count (%s; exported by an older uwstego): the %d "
                    "classes of bundle.json are not checked against it", model,
                    GRAPH_CLASSES_KEY, bundle.meta.num_classes)
        return
    if not recorded.isdigit() or int(recorded) != bundle.meta.num_classes:
        raise BundleError(f"{model}: the graph has {recorded} centroids, but bundle.json field "
                          f"'classes' lists {bundle.meta.num_classes}: re-export the bundle")
