"""The replay's view of novelty: the novel-pixel fraction over time and the most novel frames.

Read from the summary alone (:attr:`ModelSeries.novel_fraction`, empty for bundles without a
novelty calibration), like the rest of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.replay.summary import ReplaySummary

NOVELTY_PLOT = "novelty.png"
MOST_NOVEL = 5


@dataclass(frozen=True)
class NovelFrame:
    position: int  # processed frame number (index into the summary's series)
    frame_index: int  # its index on the topic
    fraction: float  # share of its pixels beyond their cluster's threshold


def has_novelty(summary: ReplaySummary) -> bool:
    return any(m.series.novel_fraction for m in summary.models)


def most_novel_frames(summary: ReplaySummary, count: int = MOST_NOVEL) -> list[NovelFrame]:
    """The primary model's ``count`` frames with the largest novel share, most novel first
    (frames without any novel pixel are not listed)."""
    if not summary.models:
        return []
    series = np.asarray(summary.primary.series.novel_fraction, dtype=np.float64)
    order = np.argsort(-series, kind="stable")[:count]
    index = summary.frames_index
    return [NovelFrame(int(i), int(index[i]) if i < len(index) else int(i), float(series[i]))
            for i in order if series[i] > 0]


def plot_novelty(plt: Any, summary: ReplaySummary, t: np.ndarray, colors: list[str],
                 path: Path, save: Any) -> None:
    """Novel pixels (%) over bag time, one line per model that has novelty."""
    fig, ax = plt.subplots(figsize=(12, 3.5))
    for model, color in zip(summary.models, colors, strict=True):
        values = np.asarray(model.series.novel_fraction, dtype=np.float64) * 100.0
        if values.size == t.size:
            ax.plot(t, values, ".-", ms=3, lw=0.8, color=color, label=model.role)
    ax.set(xlabel="bag time (s)", ylabel="novel pixels (%)",
           title="Novel pixels over time: beyond their class's novelty threshold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
