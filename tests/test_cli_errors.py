"""The dispatcher turns failed checks and runtime refusals into one line, not a traceback."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnxruntime as ort
import pytest

from tests.support.bundles import make_tiny_bundle
from tests.support.commands import assert_one_line_error, run_tool, snapshot
from tests.support.media import scene, write_bag
from uwstego.cli import run_command


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


def test_a_missing_extra_is_one_line_naming_the_package_and_the_extra(caplog):
    # As on the vehicle, which installs only the edge extra, running a training command.
    def needs_torch(_args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    with caplog.at_level(logging.ERROR):
        assert run_command(needs_torch, argparse.Namespace(verbose=False)) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "this command needs torch, which is not installed here (pip install 'uwstego[train]')"]


def test_every_project_exception_derives_from_the_one_base_type():
    # Read from the source, so that a class added later without the base fails here.
    import ast
    import builtins

    from tests.support.commands import REPO

    # Errors, not the signals a run stops on (KeyboardInterrupt and SystemExit subclasses).
    builtin_errors = {n for n in dir(builtins)
                      if isinstance(getattr(builtins, n), type)
                      and issubclass(getattr(builtins, n), Exception)}
    found, without = [], []
    for path in sorted(p for d in ("edge", "training", "export", "ros2_ws")
                       for p in (REPO / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            if bases & builtin_errors or bases & {"UwstegoError", "MissingPackage"}:
                found.append(node.name)
                if not bases & {"UwstegoError", "MissingPackage"} and node.name != "UwstegoError":
                    without.append(f"{path.relative_to(REPO)}: {node.name}")
    assert len(found) >= 15 and without == []


def test_a_project_error_of_any_kind_is_one_line(caplog):
    from uwstego.errors import UwstegoError

    def refuses(_args: argparse.Namespace) -> int:
        raise UwstegoError("the bundle /x was exported for another camera; re-export it")

    with caplog.at_level(logging.ERROR):
        assert run_command(refuses, argparse.Namespace(verbose=False)) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "the bundle /x was exported for another camera; re-export it"]


def test_the_missing_package_line_names_the_extra_from_the_installed_metadata():
    from uwstego.errors import extra_of, missing_package

    assert (extra_of("torch"), extra_of("sklearn"), extra_of("scipy"), extra_of("pycuda")) \
        == ("train", "train", "replay", "trt")
    assert missing_package("build-engine", ["tensorrt", "pycuda"], hint="JetPack ships "
                           "tensorrt") == ("build-engine needs tensorrt and pycuda, which are "
                                           "not installed here (pip install 'uwstego[trt]'; "
                                           "JetPack ships tensorrt)")


def test_a_command_whose_extra_is_missing_is_listed_with_the_same_line(caplog):
    from uwstego.cli import _register_unavailable

    parser = argparse.ArgumentParser()
    _register_unavailable(parser.add_subparsers(), "train",
                          ModuleNotFoundError("No module named 'torch'", name="torch"))
    args = parser.parse_args(["train"])
    with caplog.at_level(logging.ERROR):
        assert args.func(args) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "uwstego train needs torch, which is not installed here (pip install 'uwstego[train]')"]
