"""`make demo` end to end at a tiny size: synth -> train -> export -> replay report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_pipeline_runs_at_a_tiny_size(tmp_path: Path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(REPO / "tools" / "demo.py"), "--tiny", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    assert [k.split(" ")[0] for k in summary["timings_s"]] == ["1/4", "2/4", "3/4", "4/4"]
    report = json.loads((out / "report" / "summary.json").read_text())
    assert report["frames"]["processed"] == 24
    assert 0.0 <= report["models"][0]["ground_truth"]["scores"]["mIoU"] <= 100.0
    for name in ("index.html", report["outputs"]["video"], "latency.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert (out / "bundle" / "model.onnx").is_file()

    # A second run reuses every stage instead of redoing it.
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((out / "demo_summary.json").read_text())
    assert list(again["timings_s"]) == ["1/4 synthetic dive (24 frames 128x96, reused)"]
