"""The train / evaluate / clusters sub-commands: torch-free registration and thin dispatch."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from tests.support.trained import tiny_model
from uwstego.classes import ClassInfo, save_classes_yaml
from uwstego.training.artifact import load_trained_model, save_trained_model
from uwstego.training.cli import register_clusters, register_evaluate, register_train


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uwstego")
    sub = parser.add_subparsers()
    for register in (register_train, register_evaluate, register_clusters):
        register(sub)
    return parser


def test_registering_the_commands_does_not_import_torch():
    # `uwstego replay` on the vehicle registers every command; torch is not installed there.
    code = ("import sys, argparse\n"
            "from uwstego.training.cli import (register_train, register_evaluate,\n"
            "                                  register_clusters)\n"
            "sub = argparse.ArgumentParser().add_subparsers()\n"
            "for r in (register_train, register_evaluate, register_clusters): r(sub)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_train_arguments_and_bad_values():
    args = _parser().parse_args(["train", "a", "b", "--out", "o", "--clusters", "5", "--resume"])
    assert [str(s) for s in args.sources] == ["a", "b"] and args.clusters == 5 and args.resume
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "a", "--out", "o", "--preset", "nope"])


def test_clusters_apply_names_the_model(tmp_path):
    path = save_trained_model(tmp_path / "model.pt", tiny_model(k=2))
    save_classes_yaml(tmp_path / "names.yaml", [ClassInfo("sand", (1, 2, 3)),
                                                ClassInfo("water", (4, 5, 6))])
    args = _parser().parse_args(["clusters", str(tmp_path), "--apply",
                                 str(tmp_path / "names.yaml")])
    assert args.func(args) == 0
    assert [c.name for c in load_trained_model(path).classes] == ["sand", "water"]


def test_training_a_real_backbone_needs_its_weights(tmp_path):
    from uwstego.training.pipeline import run_training
    from uwstego.training.settings import PipelineSettings

    (tmp_path / "imgs").mkdir()
    with pytest.raises(ValueError, match="--weights is required for dino_vits8"):
        run_training([tmp_path / "imgs"], tmp_path / "out", PipelineSettings("dino_vits8"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_training([tmp_path / "nothing"], tmp_path / "out", PipelineSettings("tiny_vit8"))
