"""The replay report: PNG plots and one HTML page, drawn from the summary document alone.

The report reads the :class:`~edge.replay.summary.ReplaySummary` and never changes it; it returns
the files it wrote, for the summary that is saved next to it. matplotlib is imported here only,
so a vehicle without it replays as long as it asks for no report. With compared bundles every
figure shows every model (overlaid, or side by side where overlaying would hide one of them).
A run that processed no frame gets a page that says so and why, and no plots.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_path, write_text_atomic
from edge.replay.novelty import NOVELTY_PLOT, has_novelty, most_novel_frames, plot_novelty
from edge.replay.summary import ModelDoc, ReplaySummary, Scored
from edge.replay.video import VIDEO_FILE

# One colour per model, in the summary's order (matplotlib's tab10).
MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PERCENTILE_STYLES = {"p50": "-", "p95": "--", "p99": ":"}


class ReportUnavailable(ImportError):
    """The HTML/PNG report needs matplotlib, which the vehicle's minimal install may lack."""


def check_report_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ReportUnavailable("the replay report needs matplotlib (pip install matplotlib); "
                                "leave out --report to replay without it") from exc


def _pyplot() -> Any:
    check_report_available()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _series(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _colored(summary: ReplaySummary) -> list[tuple[ModelDoc, str]]:
    return [(m, MODEL_COLORS[i % len(MODEL_COLORS)]) for i, m in enumerate(summary.models)]


def _times(summary: ReplaySummary) -> np.ndarray:
    t = np.array(summary.frames_t_ns, dtype=np.float64)
    return (t - t[0]) / 1e9 if t.size else t


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _latency(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path) -> None:
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    for model, color in _colored(summary):
        lat = _series(model.series.latency_ms)
        ax_t.plot(t, lat, ".-", ms=3, lw=0.7, color=color, label=model.role)
        ax_h.hist(lat[~np.isnan(lat)], bins=40, color=color, alpha=0.5, label=model.role)
        for key, style in PERCENTILE_STYLES.items():
            value = getattr(model.figures.latency_ms, key)
            if value is not None:
                ax_t.axhline(value, ls=style, color=color, lw=0.8)
                ax_h.axvline(value, ls=style, color=color, lw=1.0,
                             label=f"{model.role} {key} {value:.1f} ms")
    ax_t.set(xlabel="bag time (s)", ylabel="latency (ms)", title="Segmenter latency per frame")
    ax_h.set(xlabel="latency (ms)", ylabel="frames", title="Latency histogram")
    ax_t.legend(loc="upper right", fontsize=8)
    ax_h.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _coverage(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path) -> None:
    models = summary.models
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        classes = model.bundle.classes
        cov = np.array(model.series.coverage, dtype=np.float64).reshape(len(t), len(classes))
        colors = [tuple(c / 255.0 for c in rgb) for rgb in model.bundle.class_colors]
        ax.stackplot(t, cov.T * 100.0, labels=classes, colors=colors)
        ax.set(xlabel="bag time (s)", ylabel="pixels (%)", ylim=(0, 100),
               title=f"Class coverage ({model.role})")
        ax.legend(loc="upper left", fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _lines(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path, key: str,
           ylabel: str, title: str, band: str | None = None, scale: float = 1.0) -> None:
    fig, ax = plt.subplots(figsize=(12, 3.5))
    for model, color in _colored(summary):
        values = _series(getattr(model.series, key)) * scale
        ax.plot(t, values, ".-", ms=3, lw=0.8, color=color, label=model.role)
        if band is not None:
            ax.fill_between(t, _series(getattr(model.series, band)) * scale, values,
                            color=color, alpha=0.15,
                            label=f"{model.role}: 5th percentile to mean")
    ax.set(xlabel="bag time (s)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _scores(plt: Any, t: np.ndarray, path: Path, title: str,
            entries: Sequence[tuple[str, Scored, str]]) -> None:
    """Per-frame mIoU/accuracy (or agreement) over time and per-class IoU bars;
    ``entries``: (label, scores, colour)."""
    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(entries))
    for k, (label, scores, color) in enumerate(entries):
        for key, style in (("mIoU", "-"), ("accuracy", "--")):
            overall = getattr(scores, key)
            if key in scores.over_time and overall is not None:
                ax_t.plot(t, _series(scores.over_time[key]), style, marker=".", ms=3, lw=0.8,
                          color=color, label=f"{label} {key} (overall {overall:.1f})")
        per_class = scores.per_class_iou
        x = np.arange(len(per_class)) + k * width
        ax_c.bar(x, _series(list(per_class.values())), width, color=color, label=label)
        ax_c.set_xticks(np.arange(len(per_class)) + width * (len(entries) - 1) / 2,
                        list(per_class), rotation=45, ha="right", fontsize=7)
    ax_t.set(xlabel="bag time (s)", ylabel="%", ylim=(0, 100), title=title)
    ax_c.set(ylabel="IoU (%)", ylim=(0, 100), title="Per-class IoU (whole run)")
    ax_t.legend(fontsize=8)
    ax_c.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _truth_scores(summary: ReplaySummary) -> list[tuple[ModelDoc, Scored, str]]:
    """Models scored against the ground truth, with their scores and colour."""
    return [(m, m.ground_truth.scores, color) for m, color in _colored(summary)
            if m.ground_truth is not None and m.ground_truth.scores is not None
            and m.ground_truth.scores.mIoU is not None]


def _agreements(summary: ReplaySummary) -> list[tuple[ModelDoc, Scored, str]]:
    return [(m, m.agreement, color) for m, color in _colored(summary) if m.agreement]


def write_plots(folder: Path, summary: ReplaySummary) -> tuple[str, ...]:
    """Draw every plot the summary has data for; returns the file names (none without frames)."""
    if not summary.frames.processed:
        return ()
    plt = _pyplot()
    t = _times(summary)
    written = ["latency.png", "coverage.png", "flicker.png", "confidence.png"]
    _latency(plt, summary, t, folder / "latency.png")
    _coverage(plt, summary, t, folder / "coverage.png")
    _lines(plt, summary, t, folder / "flicker.png", "flicker", "labels changed (%)",
           "Temporal flicker: pixels whose label differs from the previous frame", scale=100.0)
    _lines(plt, summary, t, folder / "confidence.png", "confidence_mean",
           "cosine similarity", "Confidence over time", band="confidence_p05")
    if has_novelty(summary):
        plot_novelty(plt, summary, t, [c for _, c in _colored(summary)], folder / NOVELTY_PLOT,
                     _save)
        written.append(NOVELTY_PLOT)
    truth = _truth_scores(summary)
    if truth:
        _scores(plt, t, folder / "ground_truth.png", "Scores against ground truth per frame",
                [(m.role, scores, color) for m, scores, color in truth])
        written.append("ground_truth.png")
    agreements = _agreements(summary)
    if agreements:
        _scores(plt, t, folder / "agreement.png",
                f"Label agreement with {summary.primary.role} per frame (after matching)",
                [(f"{m.role} agreement", scores, color) for m, scores, color in agreements])
        written.append("agreement.png")
    return tuple(written)


# -- HTML ------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    head = ("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            if header else "")
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{head}{body}</table>"


def _run_section(summary: ReplaySummary) -> str:
    frames = summary.frames
    primary = summary.models[0] if summary.models else None  # none: stopped while loading
    backend = primary.bundle.backend if primary else {}
    rows: list[tuple[str, Any]] = [
        ("bag", summary.bag), ("topic", f"{summary.topic} ({summary.topic_type})"),
        ("bundle", primary.bundle.path if primary else None)]
    rows += [(f"compared with ({m.role})", m.bundle.path) for m in summary.compared]
    rows += [("backend", backend.get("backend", None)),
             ("stopped", summary.stopped), ("frames to process", frames.to_process),
             ("frames processed", frames.processed), ("frames skipped", frames.skipped),
             ("wall time (s)", summary.wall_s), ("throughput (frames/s)",
                                                 summary.throughput_fps)]
    parts = ["<h2>Run</h2>", _table(rows)]
    if not frames.processed:
        parts.append("<p><strong>No frame was processed</strong>: "
                     f"{html.escape(frames.why_none())}. There are no figures or plots.</p>")
    if frames.skip_reasons:
        parts += ["<h3>Skipped frames</h3>",
                  _table(list(frames.skip_reasons.items()), ("reason", "frames"))]
    if frames.damage or frames.errors:
        parts += ["<h3>Damage and errors</h3><ul>"] + [
            f"<li>{html.escape(d)}</li>" for d in (*frames.damage, *frames.errors)] + ["</ul>"]
    return "\n".join(parts)


def _figures_section(summary: ReplaySummary) -> str:
    if not summary.frames.processed:
        return ""
    rows = []
    for model in summary.models:
        f = model.figures
        lat, flick = f.latency_ms, f.flicker
        novel = f.novel_fraction.mean
        rows.append((model.role, lat.p50, lat.p95, lat.p99, lat.max,
                     None if flick.mean is None else 100.0 * flick.mean, f.confidence_mean.mean,
                     None if novel is None else 100.0 * novel))
    return "<h2>Figures</h2>" + _table(rows, ("model", "latency p50 (ms)", "p95", "p99", "max",
                                               "flicker mean (%)", "confidence mean",
                                               "novel pixels mean (%)")) + _novel_frames(summary)


def _novel_frames(summary: ReplaySummary) -> str:
    frames = most_novel_frames(summary)
    if not frames:
        return ""
    rows = [(f.frame_index, f.position, 100.0 * f.fraction) for f in frames]
    return ("<h3>Most novel frames</h3>"
            + _table(rows, ("frame on the topic", "processed frame", "novel pixels (%)")))


def _scores_section(summary: ReplaySummary) -> str:
    parts = []
    scored = _truth_scores(summary)
    truth = summary.models[0].ground_truth if summary.models else None
    if scored:
        rows = [(m.role, scores.mIoU, scores.accuracy, m.ground_truth.frames_scored)
                for m, scores, _ in scored if m.ground_truth is not None]
        parts += ["<h2>Ground truth</h2>",
                  _table(rows, ("model", "mIoU (%)", "accuracy (%)", "frames scored"))]
    elif truth is not None:
        parts.append(f"<h2>Ground truth</h2><p>No frame could be scored "
                     f"({truth.frames_without_truth} frames had no matching label image).</p>")
    agreements = _agreements(summary)
    if agreements:
        parts += [f"<h2>Agreement with {html.escape(summary.primary.role)}</h2>",
                  _table([(m.role, scores.accuracy, scores.mIoU)
                          for m, scores, _ in agreements],
                         ("model", "pixels with the same (matched) label (%)",
                          "mIoU between models (%)"))]
    return "\n".join(parts)


def write_html(folder: Path, summary: ReplaySummary, plots: Sequence[str],
               video: str | None) -> Path:
    images = "\n".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots)
    video_html = (f'<h2>Overlay video</h2><p><video src="{video}" controls width="800"></video>'
                  f'<br><a href="{video}">{video}</a> (MPEG-4; if the browser does not play it, '
                  "open it in a media player)</p>" if video else "")
    plots_html = f"<h2>Plots</h2>\n{images}" if plots else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>uwstego replay: {html.escape(summary.bag)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:.2em .6em}}
img{{max-width:100%}}</style></head><body>
<h1>Replay of {html.escape(summary.bag)}</h1>
{_run_section(summary)}
{_figures_section(summary)}
{_scores_section(summary)}
{plots_html}
{video_html}
<p>Every figure is in <a href="summary.json">summary.json</a>.</p>
</body></html>
"""
    return write_text_atomic(folder / "index.html", page)


@dataclass(frozen=True)
class ReportFiles:
    plots: tuple[str, ...]
    video: str | None


def write_report(folder: Path, summary: ReplaySummary) -> ReportFiles:
    """Plots and the HTML page into ``folder`` (the video is already there, if any)."""
    plots = write_plots(folder, summary)
    video = VIDEO_FILE if (folder / VIDEO_FILE).is_file() else None
    write_html(folder, summary, plots, video)
    return ReportFiles(plots, video)
