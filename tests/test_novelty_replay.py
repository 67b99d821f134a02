"""Replay of a calibrated bundle: novelty topics in the output bag, series, report section."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.bundles import make_tiny_bundle
from tests.test_replay import CAMERA, frames, read_topic, settings, topic_counts, write_bag
from uwstego.coverage import UNKNOWN_NAME
from uwstego.novelty import novelty_mono8
from uwstego.replay.looks import pick_frames
from uwstego.replay.loop import SUMMARY_FILE, replay
from uwstego.replay.novelty import NOVELTY_PLOT
from uwstego.replay.outputs import NODE_NAMESPACE
from uwstego.replay.summary import read_summary
from uwstego.segmenter import Segmenter


@pytest.fixture(scope="module")
def novelty_bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("nb") / "bundle", camera=CAMERA,
                            novelty=True)


def test_replay_series_bag_topics_and_report(tmp_path, novelty_bundle):
    pytest.importorskip("matplotlib")
    images = frames(6)
    bag = write_bag(tmp_path / "dive", images)
    out, report = tmp_path / "out", tmp_path / "report"
    result = replay(bag, novelty_bundle, settings(), out_bag=out, report_dir=report)

    seg = Segmenter(novelty_bundle, backend="onnxruntime")
    direct = [seg.segment(rgb) for rgb in images]
    expected = [d.novel_fraction for d in direct]
    summary = read_summary(report / SUMMARY_FILE)
    assert summary == result.summary
    series = summary.primary.series.novel_fraction
    assert series == pytest.approx(expected)
    assert summary.primary.figures.novel_fraction.mean == pytest.approx(np.mean(expected))
    assert max(expected) > 0  # random weights: some pixels fall beyond their threshold

    novelty = [m for _, m in read_topic(out, f"{NODE_NAMESPACE}/novelty")]
    for msg, d in zip(novelty, direct, strict=True):
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width),
                                      novelty_mono8(d.novelty))
    cov = [m for _, m in read_topic(out, f"{NODE_NAMESPACE}/coverage")]
    assert cov[0].layout.dim[0].label.split(",")[-1] == UNKNOWN_NAME
    assert [float(m.data[-1]) for m in cov] == pytest.approx(expected, abs=1e-6)

    # The most novel frame is one of the frames to look at, with its figure.
    picked = pick_frames(summary)
    most = int(np.argmax(expected))
    assert any(r.startswith(f"most novel ({100 * expected[most]:.1f}%") for r in picked[most])
    assert any(any(r.startswith("most novel") for r in look.reasons)
               for look in summary.outputs.looks)
    assert NOVELTY_PLOT in summary.outputs.plots and (report / NOVELTY_PLOT).is_file()
    page = (report / "index.html").read_text()
    assert "most novel (" in page and NOVELTY_PLOT in page and "novel pixels mean" in page


def test_bundle_without_novelty_has_empty_series(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "plain", camera=CAMERA)
    bag = write_bag(tmp_path / "dive", frames(3))
    result = replay(bag, bundle, settings(), out_bag=tmp_path / "out")
    assert result.summary.primary.series.novel_fraction == ()
    assert result.summary.primary.figures.novel_fraction.mean is None
    assert f"{NODE_NAMESPACE}/novelty" not in topic_counts(tmp_path / "out")
