"""Real deploy bundles for the runtime, node and replay tests, on any interpreter.

Where torch imports, ``make_tiny_bundle`` exports a tiny random model through the real export
pipeline (``tests.support.tiny_export``). The vehicle's interpreter (JetPack 6: Python 3.10,
numpy 1.x, no torch) cannot export, so there it copies the same bundle from a store filled on the
workstation by ``tools/prebuild_test_bundles.py`` and named by ``UWSTEGO_TEST_BUNDLES``. Without a
store those tests skip; a store that lacks a bundle is an error (add its spec to ``SPECS``), so a
new bundle variant cannot silently drop out of the vehicle-interpreter run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from uwstego.atomic import atomic_dir
from uwstego.bundle import BUNDLE_FILE
from uwstego.enhance import EnhanceSettings

BUNDLES_ENV = "UWSTEGO_TEST_BUNDLES"


@dataclass(frozen=True)
class BundleSpec:
    """Everything that decides a tiny bundle's content; ``network=None`` = camera size rounded to
    patch multiples (aspect kept)."""

    camera: tuple[int, int] = (128, 96)
    network: tuple[int, int] | None = None
    seed: int = 0
    k: int = 5
    enhancement: EnhanceSettings = field(default_factory=EnhanceSettings)
    backbone: str = "tiny_vit8"
    novelty: bool = False  # calibrated model: the graph has the novelty output
    unknown: bool = False  # exported with the unknown label (needs novelty)

    @property
    def key(self) -> str:
        """Folder name in a store: readable, plus a digest of every field."""
        # Fields at their defaults stay out, so adding one does not rename every stored bundle.
        defaults = BundleSpec()
        blob = json.dumps({k: v for k, v in dataclasses.asdict(self).items()
                           if k in _FIRST_FIELDS or v != getattr(defaults, k)},
                          sort_keys=True).encode()
        w, h = self.camera
        return f"{self.backbone}-{w}x{h}-seed{self.seed}-k{self.k}-" \
               f"{hashlib.sha256(blob).hexdigest()[:12]}"


# The fields the store keys were first made of: always in the digest.
_FIRST_FIELDS = ("camera", "network", "seed", "k", "enhancement", "backbone")

# Every bundle the suite asks for: what tools/prebuild_test_bundles.py exports.
SPECS = (
    BundleSpec(camera=(64, 48)),  # segmenter, replay, ROS node
    BundleSpec(camera=(64, 48), seed=1, k=4, enhancement=EnhanceSettings.raw()),  # replay compare
    BundleSpec(camera=(96, 64)),  # TensorRT engine
    BundleSpec(camera=(96, 64), enhancement=EnhanceSettings(temporal_alpha=1.0)),  # uwstego play
    BundleSpec(camera=(64, 48), novelty=True),  # novelty output: segmenter, node, replay
)


def can_export() -> bool:
    return importlib.util.find_spec("torch") is not None


def make_tiny_bundle(out_dir: str | Path, camera: tuple[int, int] = (128, 96),
                     network: tuple[int, int] | None = None, seed: int = 0, k: int = 5,
                     enhancement: EnhanceSettings | None = None,
                     backbone: str = "tiny_vit8", novelty: bool = False,
                     unknown: bool = False) -> Path:
    """A real exported bundle at ``out_dir`` for ``camera`` = (width, height)."""
    spec = BundleSpec(tuple(camera), None if network is None else tuple(network), seed, k,
                      enhancement or EnhanceSettings(), backbone, novelty, unknown)
    if can_export():
        from tests.support.tiny_export import export_tiny_bundle  # torch: workstation only

        return export_tiny_bundle(spec, Path(out_dir))
    return copy_prebuilt(spec, Path(out_dir))


def copy_prebuilt(spec: BundleSpec, out_dir: Path) -> Path:
    root = os.environ.get(BUNDLES_ENV)
    if not root:
        pytest.skip(f"needs an exported bundle: torch is not installed here and {BUNDLES_ENV} "
                    "is not set (fill a store with tools/prebuild_test_bundles.py)")
    source = Path(root) / spec.key
    if not (source / BUNDLE_FILE).is_file():
        raise FileNotFoundError(
            f"{BUNDLES_ENV}={root} holds no bundle {spec.key} for {spec}: add the spec to SPECS in "
            "tests/support/bundles.py and rerun tools/prebuild_test_bundles.py")
    with atomic_dir(out_dir) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return out_dir


def prebuild(root: Path) -> list[Path]:
    """Export every bundle of ``SPECS`` into the store ``root`` (needs torch)."""
    from tests.support.tiny_export import export_tiny_bundle

    return [export_tiny_bundle(spec, root / spec.key) for spec in SPECS]
