"""``uwstego synth`` into a folder whose settings.json is damaged, foreign or hostile: one line
naming the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.commands import assert_one_line_error, run_tool
from uwstego.training.synth.settings import DiveSettings, read_dive_settings


@pytest.mark.parametrize("content, needle", [
    (b'{"seed": ', "is not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b"\xff\xfe", "is not UTF-8 text"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper than"),
    (b'{"flavour": 1}', "unknown dive settings ['flavour']"),
])
def test_damaged_settings_are_one_line(tmp_path: Path, content: bytes, needle: str):
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    with pytest.raises(ValueError) as exc:
        read_dive_settings(path)
    assert needle in str(exc.value) and str(path) in str(exc.value)
    assert "choose another output folder" in str(exc.value)


def test_synth_refuses_a_folder_with_damaged_settings(tmp_path: Path):
    (tmp_path / "settings.json").write_text("[1, 2]")
    outcome = run_tool("uwstego", "synth", tmp_path, "--frames", "2", "--size", "64x64",
                       "--format", "folders", timeout=120)
    assert_one_line_error(outcome, "settings.json: dive settings must be a JSON object")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_its_own_settings_read_back(tmp_path: Path):
    from uwstego.atomic import write_json_atomic

    settings = DiveSettings(frames=3)
    write_json_atomic(tmp_path / "settings.json", settings.to_dict())
    assert read_dive_settings(tmp_path / "settings.json") == settings
