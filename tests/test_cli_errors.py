"""The dispatcher turns failed checks and runtime refusals into one line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool, snapshot
from tests.support.media import scene, write_bag


def test_a_runtime_error_is_one_line(tmp_path: Path):
    # BackendUnavailable is a RuntimeError: a backend named explicitly that cannot run here.
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal cannot be provoked")
    bundle = make_tiny_bundle(tmp_path / "b", camera=(64, 48))
    bag = write_bag(tmp_path / "bag", [scene(0, 48, 64)])
    before = snapshot(tmp_path)
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--backend",
                       "onnxruntime-cuda", "--out", tmp_path / "seg")
    assert_one_line_error(outcome, "CUDAExecutionProvider not in this onnxruntime build")
    assert snapshot(tmp_path) == before
