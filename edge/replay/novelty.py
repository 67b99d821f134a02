"""The replay report's novelty plot: the novel-pixel fraction over time, per model.

Read from the summary alone (:attr:`ModelSeries.novel_fraction`, empty for bundles without a
novelty calibration), like the rest of the report; the most novel frames are one of the reasons
of the frames to look at (:mod:`uwstego.replay.looks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.replay.summary import ModelDoc, ReplaySummary

NOVELTY_PLOT = "novelty.png"


def has_novelty(summary: ReplaySummary) -> bool:
    return any(m.series.novel_fraction for m in summary.models)


def plot_novelty(plt: Any, colored: Sequence[tuple[ModelDoc, str, str]], t: np.ndarray,
                 path: Path, save: Any) -> None:
    """Novel pixels (%) over bag time, one line per model that has novelty; ``colored``:
    (model, name, colour) as the report draws them."""
    fig, ax = plt.subplots(figsize=(12, 3.5))
    for model, name, color in colored:
        values = np.asarray(model.series.novel_fraction, dtype=np.float64) * 100.0
        if values.size == t.size:
            ax.plot(t, values, ".-", ms=3, lw=0.8, color=color, label=name)
    ax.set(xlabel="bag time (s)", ylabel="novel pixels (%)",
           title="Novel pixels over time: beyond their class's novelty threshold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
