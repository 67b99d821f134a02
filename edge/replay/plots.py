"""The replay report's PNG plots, drawn from the summary document alone.

matplotlib is imported here only, so a vehicle without it replays as long as it asks for no
report. With compared bundles every figure shows every model (overlaid, or side by side where
overlaying would hide one of them). A run that processed no frame gets no plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.atomic import atomic_path
from uwstego.errors import MissingPackage, missing_package
from uwstego.replay.novelty import NOVELTY_PLOT, has_novelty, plot_novelty
from uwstego.replay.summary import ModelDoc, ReplaySummary, Scored, model_labels

# One colour per model, in the summary's order (matplotlib's tab10).
MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PERCENTILE_STYLES = {"p50": "-", "p95": "--", "p99": ":"}
CONFUSION_PLOT = "confusion.png"


class ReportUnavailable(MissingPackage):
    """The HTML/PNG report needs matplotlib, which the vehicle's minimal install may lack."""


def check_report_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ReportUnavailable(missing_package(
            "the replay report", "matplotlib",
            hint="or leave out --report to replay without it")) from exc


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; :class:`ReportUnavailable` without matplotlib."""
    check_report_available()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _series(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def colored_models(summary: ReplaySummary) -> list[tuple[ModelDoc, str, str]]:
    """(model, its name, its colour) in the summary's order; the colours hold for every plot."""
    names = model_labels([m.bundle for m in summary.models])
    return [(m, names[i], MODEL_COLORS[i % len(MODEL_COLORS)])
            for i, m in enumerate(summary.models)]


def _times(summary: ReplaySummary) -> np.ndarray:
    t = np.array(summary.frames_t_ns, dtype=np.float64)
    return (t - t[0]) / 1e9 if t.size else t


def _outside(ax: Any, **kw: Any) -> None:
    """The legend right of the axes, never over the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  fontsize=8, **kw)


def save_png(fig: Any, path: Path) -> None:
    """``fig`` as a PNG at ``path``, atomically."""
    with atomic_path(path) as tmp:
        # "tight" grows the picture to hold the legends placed outside the axes.
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _latency(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path) -> None:
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [2, 1]})
    for model, name, color in colored_models(summary):
        lat = _series(model.series.latency_ms)
        ax_t.plot(t, lat, ".-", ms=3, lw=0.7, color=color, label=name)
        ax_h.hist(lat[~np.isnan(lat)], bins=40, color=color, alpha=0.5, label=name)
        for key, style in PERCENTILE_STYLES.items():
            value = getattr(model.figures.latency_ms, key)
            if value is not None:
                ax_t.axhline(value, ls=style, color=color, lw=0.8)
                ax_h.axvline(value, ls=style, color=color, lw=1.0,
                             label=f"{name} {key} {value:.1f} ms")
    ax_t.set(xlabel="bag time (s)", ylabel="latency (ms)",
             title="Segmenter latency per frame (lines: p50 -, p95 --, p99 :)")
    ax_h.set(xlabel="latency (ms)", ylabel="frames", title="Latency histogram")
    _outside(ax_h)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _coverage(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path) -> None:
    colored = colored_models(summary)
    fig, axes = plt.subplots(len(colored), 1, figsize=(12, 3.2 * len(colored)), squeeze=False)
    for ax, (model, name, _) in zip(axes[:, 0], colored, strict=True):
        classes = model.bundle.classes
        cov = np.array(model.series.coverage, dtype=np.float64).reshape(len(t), len(classes))
        colors = [tuple(c / 255.0 for c in rgb) for rgb in model.bundle.class_colors]
        ax.stackplot(t, cov.T * 100.0, labels=classes, colors=colors)
        ax.set(xlabel="bag time (s)", ylabel="pixels (%)", ylim=(0, 100),
               title=f"Class coverage: {name}")
        _outside(ax, ncol=1 if len(classes) <= 12 else 2)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _lines(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path, key: str,
           ylabel: str, title: str, band: str | None = None, scale: float = 1.0) -> None:
    fig, ax = plt.subplots(figsize=(12, 3.5))
    for model, name, color in colored_models(summary):
        values = _series(getattr(model.series, key)) * scale
        ax.plot(t, values, ".-", ms=3, lw=0.8, color=color, label=name)
        if band is not None:
            ax.fill_between(t, _series(getattr(model.series, band)) * scale, values,
                            color=color, alpha=0.15, label=f"{name}: 5th percentile to mean")
    ax.set(xlabel="bag time (s)", ylabel=ylabel, title=title)
    _outside(ax)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _scores(plt: Any, t: np.ndarray, path: Path, title: str,
            entries: Sequence[tuple[str, Scored, str]]) -> None:
    """Per-frame mIoU/accuracy (or agreement) over time and per-class IoU bars;
    ``entries``: (label, scores, colour)."""
    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(15, 4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(entries))
    for k, (label, scores, color) in enumerate(entries):
        for key, style in (("mIoU", "-"), ("accuracy", "--")):
            overall = getattr(scores, key)
            if key in scores.over_time and overall is not None:
                ax_t.plot(t, _series(scores.over_time[key]), style, marker=".", ms=3, lw=0.8,
                          color=color, label=f"{label} {key} (overall {overall:.1f}%)")
        per_class = scores.per_class_iou
        x = np.arange(len(per_class)) + k * width
        ax_c.bar(x, _series(list(per_class.values())), width, color=color, label=label)
        ax_c.set_xticks(np.arange(len(per_class)) + width * (len(entries) - 1) / 2,
                        list(per_class), rotation=45, ha="right", fontsize=7)
    ax_t.set(xlabel="bag time (s)", ylabel="score (%)", ylim=(0, 100), title=title)
    ax_c.set(ylabel="IoU (%)", ylim=(0, 100), title="Per-class IoU (whole run)")
    _outside(ax_t)
    _outside(ax_c)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def confusion_share(confusion: Sequence[Sequence[int]]) -> np.ndarray:
    """``confusion[cluster][truth class]`` pixel counts as ``share[truth class, cluster]`` in
    percent of the class's pixels: ground truth on the rows, as ``uwstego evaluate`` draws it."""
    counts = np.array(confusion, dtype=np.float64).T
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) * 100.0


def _confusion(plt: Any, scored: Sequence[tuple[ModelDoc, str, Scored]], path: Path) -> None:
    """Per ground-truth class (a row, as in ``uwstego evaluate``), the share of its pixels each
    cluster took (rows sum to 100)."""
    fig, axes = plt.subplots(1, len(scored), figsize=(6.5 * len(scored), 5.5), squeeze=False)
    for ax, (model, name, scores) in zip(axes[0], scored, strict=True):
        share = confusion_share(scores.confusion)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100, aspect="auto")
        truth_names = list(scores.per_class_iou)
        ax.set_yticks(range(len(truth_names)), truth_names, fontsize=7)
        ax.set_xticks(range(len(model.bundle.classes)), model.bundle.classes, rotation=45,
                      ha="right", fontsize=7)
        ax.set(ylabel="ground-truth class", xlabel=f"cluster of {name}",
               title=f"Confusion: {name} (% of each class's pixels)")
        for gt_class, cluster in enumerate(scores.assignment):
            if gt_class < share.shape[0] and cluster < share.shape[1]:
                ax.add_patch(plt.Rectangle((cluster - 0.5, gt_class - 0.5), 1, 1, fill=False,
                                           ec="#d62728", lw=1.5))
        if share.size <= 400:
            for (row, col), value in np.ndenumerate(share):
                if value >= 0.5:
                    ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if value > 60 else "black")
        fig.colorbar(image, ax=ax, label="pixels of the ground-truth class (%)")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def truth_scores(summary: ReplaySummary) -> list[tuple[ModelDoc, str, Scored, str]]:
    """Models scored against the ground truth: (model, name, scores, colour)."""
    return [(m, name, m.ground_truth.scores, color) for m, name, color in colored_models(summary)
            if m.ground_truth is not None and m.ground_truth.scores is not None
            and m.ground_truth.scores.mIoU is not None]


def agreements(summary: ReplaySummary) -> list[tuple[ModelDoc, str, Scored, str]]:
    return [(m, name, m.agreement, color) for m, name, color in colored_models(summary)
            if m.agreement]


def write_plots(folder: Path, summary: ReplaySummary) -> tuple[str, ...]:
    """Draw every plot the summary has data for; returns the file names (none without frames)."""
    if not summary.frames.processed:
        return ()
    plt = pyplot()
    t = _times(summary)
    written = ["latency.png", "coverage.png", "flicker.png", "confidence.png"]
    _latency(plt, summary, t, folder / "latency.png")
    _coverage(plt, summary, t, folder / "coverage.png")
    _lines(plt, summary, t, folder / "flicker.png", "flicker", "pixels changed (%)",
           "Temporal flicker: pixels whose label differs from the previous frame", scale=100.0)
    _lines(plt, summary, t, folder / "confidence.png", "confidence_mean",
           "cosine similarity (1)", "Confidence over time (max cosine similarity to a centroid)",
           band="confidence_p05")
    if has_novelty(summary):
        plot_novelty(plt, colored_models(summary), t, folder / NOVELTY_PLOT, save_png)
        written.append(NOVELTY_PLOT)
    truth = truth_scores(summary)
    if truth:
        _scores(plt, t, folder / "ground_truth.png", "Scores against ground truth per frame",
                [(name, scores, color) for _, name, scores, color in truth])
        written.append("ground_truth.png")
        with_matrix = [(m, name, scores) for m, name, scores, _ in truth if scores.confusion]
        if with_matrix:
            _confusion(plt, with_matrix, folder / CONFUSION_PLOT)
            written.append(CONFUSION_PLOT)
    compared = agreements(summary)
    if compared:
        first = colored_models(summary)[0][1]
        _scores(plt, t, folder / "agreement.png",
                f"Label agreement with {first} per frame (after matching)",
                [(f"{name} agreement", scores, color) for _, name, scores, color in compared])
        written.append("agreement.png")
    return tuple(written)
