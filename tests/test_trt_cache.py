"""The engine cache decides, without TensorRT, which plan may load and says why others may not."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from uwstego.trt.cache import (
    EngineKey,
    find_engine,
    is_stale,
    plan_path,
    read_l4t_release,
    read_sidecar,
    sidecar_path,
    timing_cache_path,
    update_sidecar,
    write_engine,
)

ORIN = EngineKey(trt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
                 l4t_release="36.4.3", precision="fp16", onnx_sha256="ab" * 32,
                 input_shapes={"image": (1, 720, 1280, 3), "enhance": (1, 5)})


def test_key_round_trip_and_digest_covers_every_field():
    assert EngineKey.from_dict(json.loads(json.dumps(ORIN.to_dict()))) == ORIN
    changes = dict(trt_version="8.6.2", gpu_name="Orin Nano", compute_capability="8.6",
                   l4t_release=None, precision="fp32", onnx_sha256="cd" * 32,
                   input_shapes={"image": (1, 480, 640, 3), "enhance": (1, 5)},
                   optimization_level=5)
    digests = {dataclasses.replace(ORIN, **{k: v}).digest() for k, v in changes.items()}
    assert len(digests | {ORIN.digest()}) == len(changes) + 1
    assert plan_path(Path("e"), ORIN).name.startswith("fp16-sm87-trt10.3.0-")
    with pytest.raises(ValueError, match="engine key fields"):
        EngineKey.from_dict({**ORIN.to_dict(), "extra": 1})


def test_matching_plan_is_found(tmp_path):
    plan = write_engine(tmp_path, ORIN, b"plan-bytes", {"build_seconds": 1.0})
    lookup = find_engine(tmp_path, ORIN)
    assert lookup.plan == plan and "matches" in lookup.reason
    assert read_sidecar(plan)["plan_sha256"] and is_stale(plan, ORIN) is None


@pytest.mark.parametrize(("change", "reason"), [
    (dict(trt_version="8.6.2"), "TensorRT version: plan 10.3.0, this system 8.6.2"),
    (dict(gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9"),
     "GPU: plan Orin, this system NVIDIA GeForce RTX 4090; compute capability: plan 8.7"),
    (dict(onnx_sha256="cd" * 32), "ONNX graph \\(sha256\\)"),
    (dict(l4t_release="36.3.0"), "L4T release: plan 36.4.3, this system 36.3.0"),
    (dict(precision="fp32"), "precision: plan fp16, this system fp32"),
])
def test_foreign_or_stale_plans_are_refused_with_the_reason(tmp_path, change, reason):
    plan = write_engine(tmp_path, ORIN, b"plan-bytes")
    current = dataclasses.replace(ORIN, **change)
    lookup = find_engine(tmp_path, current)
    assert lookup.plan is None
    assert "1 cached plan(s) do not fit" in lookup.reason
    assert re.search(reason, lookup.reason)
    assert re.search(reason, is_stale(plan, current))


def test_a_foreign_plan_under_the_expected_name_is_still_refused(tmp_path):
    other = dataclasses.replace(ORIN, trt_version="8.6.2")
    built = write_engine(tmp_path, other, b"other")
    # Someone renamed the plan and its sidecar to the name this system looks for.
    built.rename(plan_path(tmp_path, ORIN))
    sidecar_path(built).rename(sidecar_path(plan_path(tmp_path, ORIN)))
    lookup = find_engine(tmp_path, ORIN)
    assert lookup.plan is None and "TensorRT version: plan 8.6.2" in lookup.reason


def test_truncated_plan_missing_or_damaged_sidecar(tmp_path):
    plan = write_engine(tmp_path, ORIN, b"plan-bytes" * 10)
    plan.write_bytes(plan.read_bytes()[:20])
    assert "changed since it was built" in find_engine(tmp_path, ORIN).reason
    sidecar_path(plan).write_text("{not json")
    assert "is damaged" in find_engine(tmp_path, ORIN).reason
    sidecar_path(plan).unlink()
    assert "has no sidecar" in find_engine(tmp_path, ORIN).reason
    sidecar_path(plan).write_text(json.dumps({"format": "uwstego.trt_engine"}))
    assert "holds no valid engine key" in find_engine(tmp_path, ORIN).reason


def test_empty_or_missing_cache(tmp_path):
    assert "no engine cached" in find_engine(tmp_path / "nowhere", ORIN).reason
    assert find_engine(tmp_path, ORIN).plan is None


def test_sidecar_updates_keep_the_plan_valid(tmp_path):
    plan = write_engine(tmp_path, ORIN, b"plan-bytes")
    update_sidecar(plan, check={"label_agreement": 0.999})
    assert read_sidecar(plan)["check"] == {"label_agreement": 0.999}
    assert find_engine(tmp_path, ORIN).plan == plan


def test_l4t_release_and_timing_cache_name(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                       "EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n")
    assert read_l4t_release(release) == "36.4.3"
    assert read_l4t_release(tmp_path / "absent") is None
    release.write_text("garbage")
    assert read_l4t_release(release) is None
    assert timing_cache_path(tmp_path, ORIN).name == "timing-trt10.3.0-sm87.cache"
