"""Every option of every command says what it does and its default once; -v shows our debug
lines, not third-party floods; the random-weights refusal names the flag that allows it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.commands import assert_one_line_error, run_tool, snapshot
from uwstego.cli import build_parser


# Parsers other helpers own (issue 12 lists their missing help texts for them).
def _commands() -> dict[str, argparse.ArgumentParser]:
    from uwstego.export.cli import add_arguments

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = dict(sub.choices)
    export_trt = argparse.ArgumentParser(prog="export-trt")
    add_arguments(export_trt)
    commands["export-trt"] = export_trt
    return commands


def _option_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    formatter = parser._get_formatter()
    return {"/".join(a.option_strings) or a.dest:
            formatter._expand_help(a) if a.help else ""
            for a in parser._actions if not isinstance(a, argparse._HelpAction)}


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_has_help_and_one_default(name: str):
    helps = _option_helps(_commands()[name])
    assert [opt for opt, text in helps.items() if not text.strip()] == []
    assert [opt for opt, text in helps.items() if text.count("(default") > 1] == []
    assert [opt for opt, text in helps.items() if "default: None" in text] == []


def test_train_without_weights_names_the_random_weights_flag(tmp_path: Path):
    pytest.importorskip("torch")
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((64, 64, 3), np.uint8))
    before = snapshot(tmp_path)
    outcome = run_tool("uwstego", "train", tmp_path / "images", "--out", tmp_path / "run")
    assert_one_line_error(outcome, "--weights is required for dino_vits8", "--random-weights")
    assert "download=True" not in outcome.stderr
    assert snapshot(tmp_path) == before


def test_verbose_logs_hold_no_third_party_debug_flood(tmp_path: Path):
    pytest.importorskip("torch")
    from tests.support.trained import tiny_model
    from uwstego.training.artifact import save_trained_model

    model = save_trained_model(tmp_path / "model.pt", tiny_model(k=3))
    rng = np.random.default_rng(0)
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"),
                    rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        mask = cv2.resize(rng.integers(0, 3, (4, 4), dtype=np.uint8), (64, 64),
                          interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(tmp_path / "masks" / f"{i}.png"), mask)
    outcome = run_tool("uwstego", "-v", "evaluate", model, "--images", tmp_path / "images",
                       "--masks", tmp_path / "masks", "--resolution", "64",
                       "--out", tmp_path / "eval")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert any(p.suffix == ".png" for p in (tmp_path / "eval").iterdir())  # matplotlib ran
    debug = [line for line in outcome.stderr.splitlines() if " DEBUG " in line]
    flood = [line for line in debug if re.search(r" DEBUG (matplotlib|PIL)", line)]
    assert flood == [], flood[:5]


def test_a_replay_with_a_report_prints_no_codec_probe_noise_and_its_backend_once(tmp_path):
    # What a user read as failures: FFmpeg's and OpenCV's encoder probing, and four lines per
    # bundle (repeated for --compare) about TensorRT and CUDA being unavailable.
    from tests.support.bundles import make_tiny_bundle
    from tests.support.media import scene, write_bag

    bundle = make_tiny_bundle(tmp_path / "bundle", camera=(64, 48))
    bag = write_bag(tmp_path / "dive", [scene(i, h=48, w=64) for i in range(3)])
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--compare", bundle,
                       "--report", tmp_path / "report", "--no-progress")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    lines = outcome.stderr.splitlines()
    noise = [line for line in lines if re.search(
        r"@ 0x[0-9a-f]+\]|can't configure encoder|Could not find a valid device|OpenCV: FFMPEG",
        line)]
    assert noise == []
    backend = [line for line in lines if re.search(r"tensorrt|TensorRT|CUDA", line)]
    assert len(backend) <= 1 and all("backend auto picked" in line for line in backend)
    assert any(name.startswith("overlay.") for name in
               (p.name for p in (tmp_path / "report").iterdir()))  # the video was written
