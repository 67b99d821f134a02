"""The replay report: PNG plots and one HTML page, drawn from ``summary.json`` alone.

matplotlib is imported here only, so a vehicle without it replays as long as it asks for no
report. With a comparison bundle every figure shows both models (overlaid, or side by side where
overlaying would hide one of them).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_path, write_text_atomic
from edge.replay.video import VIDEO_FILE

PRIMARY, SECONDARY = "#1f77b4", "#d62728"
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


def _models(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any],
                                                   dict[str, Any]]]:
    """(label, bundle, summary figures, per-frame series) of each model in the run."""
    out = [("model", summary["bundle"], summary["model"], summary["per_frame"]["model"])]
    if "compare" in summary:
        out.append(("compare", summary["compare"]["bundle"], summary["compare"]["model"],
                    summary["per_frame"]["compare"]["model"]))
    return out


def _times(summary: dict[str, Any]) -> np.ndarray:
    t = np.array(summary["per_frame"]["t_ns"], dtype=np.float64)
    return (t - t[0]) / 1e9 if t.size else t


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _latency(plt: Any, summary: dict[str, Any], t: np.ndarray, path: Path) -> None:
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    for (label, _, figures, series), color in zip(_models(summary), (PRIMARY, SECONDARY),
                                                  strict=False):
        lat = _series(series["latency_ms"])
        ax_t.plot(t, lat, ".-", ms=3, lw=0.7, color=color, label=label)
        ax_h.hist(lat[~np.isnan(lat)], bins=40, color=color, alpha=0.5, label=label)
        for key, style in PERCENTILE_STYLES.items():
            value = figures["latency_ms"][key]
            if value is not None:
                ax_t.axhline(value, ls=style, color=color, lw=0.8)
                ax_h.axvline(value, ls=style, color=color, lw=1.0,
                             label=f"{label} {key} {value:.1f} ms")
    ax_t.set(xlabel="bag time (s)", ylabel="latency (ms)", title="Segmenter latency per frame")
    ax_h.set(xlabel="latency (ms)", ylabel="frames", title="Latency histogram")
    ax_t.legend(loc="upper right", fontsize=8)
    ax_h.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _coverage(plt: Any, summary: dict[str, Any], t: np.ndarray, path: Path) -> None:
    models = _models(summary)
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4), squeeze=False)
    for ax, (label, bundle, _, series) in zip(axes[0], models, strict=True):
        cov = np.array(series["coverage"], dtype=np.float64).reshape(len(t), -1)
        colors = [tuple(c / 255.0 for c in rgb) for rgb in bundle["class_colors"]]
        if len(t):
            ax.stackplot(t, cov.T * 100.0, labels=bundle["classes"], colors=colors)
        ax.set(xlabel="bag time (s)", ylabel="pixels (%)", ylim=(0, 100),
               title=f"Class coverage ({label})")
        ax.legend(loc="upper left", fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _lines(plt: Any, summary: dict[str, Any], t: np.ndarray, path: Path, key: str,
           ylabel: str, title: str, band: str | None = None, scale: float = 1.0) -> None:
    fig, ax = plt.subplots(figsize=(12, 3.5))
    for (label, _, _, series), color in zip(_models(summary), (PRIMARY, SECONDARY),
                                            strict=False):
        values = _series(series[key]) * scale
        ax.plot(t, values, ".-", ms=3, lw=0.8, color=color, label=label)
        if band is not None:
            ax.fill_between(t, _series(series[band]) * scale, values, color=color, alpha=0.15,
                            label=f"{label}: 5th percentile to mean")
    ax.set(xlabel="bag time (s)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _scores(plt: Any, summary: dict[str, Any], t: np.ndarray, path: Path, title: str,
            entries: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """Per-frame mIoU/accuracy (or agreement) over time and per-class IoU bars."""
    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(entries))
    for k, ((label, figures, over_time), color) in enumerate(zip(entries, (PRIMARY, SECONDARY),
                                                                 strict=False)):
        for key, style in (("mIoU", "-"), ("accuracy", "--")):
            if key in over_time:
                ax_t.plot(t, _series(over_time[key]), style, marker=".", ms=3, lw=0.8,
                          color=color, label=f"{label} {key} (overall {figures[key]:.1f})")
        per_class = figures["per_class_iou"]
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


def write_plots(folder: Path, summary: dict[str, Any]) -> list[str]:
    """Draw every plot the summary has data for; returns the file names."""
    plt = _pyplot()
    t = _times(summary)
    written = ["latency.png", "coverage.png", "flicker.png", "confidence.png"]
    _latency(plt, summary, t, folder / "latency.png")
    _coverage(plt, summary, t, folder / "coverage.png")
    _lines(plt, summary, t, folder / "flicker.png", "flicker", "labels changed (%)",
           "Temporal flicker: pixels whose label differs from the previous frame", scale=100.0)
    _lines(plt, summary, t, folder / "confidence.png", "confidence_mean",
           "cosine similarity", "Confidence over time", band="confidence_p05")
    truth = [(label, doc["ground_truth"], per_frame["ground_truth"])
             for label, doc, per_frame in _truth_entries(summary)]
    if truth:
        _scores(plt, summary, t, folder / "ground_truth.png",
                "Scores against ground truth per frame", truth)
        written.append("ground_truth.png")
    agreement = summary.get("compare", {}).get("agreement")
    if agreement:
        series = {"accuracy": summary["per_frame"]["compare"]["agreement"]}
        _scores(plt, summary, t, folder / "agreement.png",
                "Label agreement between the models per frame (after matching)",
                [("agreement", agreement, series)])
        written.append("agreement.png")
    return written


def _truth_entries(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for label, doc, per_frame in (("model", summary, summary["per_frame"]),
                                  ("compare", summary.get("compare", {}),
                                   summary["per_frame"].get("compare", {}))):
        if doc.get("ground_truth", {}).get("mIoU") is not None:
            out.append((label, doc, per_frame))
    return out


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


def _run_section(summary: dict[str, Any]) -> str:
    frames = summary["frames"]
    rows = [("bag", summary["bag"]), ("topic", f"{summary['topic']} ({summary['topic_type']})"),
            ("bundle", summary["bundle"]["path"]),
            ("backend", summary["bundle"]["backend"].get("backend",
                                                         summary["bundle"]["backend"])),
            ("stopped", summary["stopped"]), ("frames to process", frames["to_process"]),
            ("frames processed", frames["processed"]), ("frames skipped", frames["skipped"]),
            ("wall time (s)", summary["wall_s"]), ("throughput (frames/s)",
                                                   summary["throughput_fps"])]
    if "compare" in summary:
        rows.insert(3, ("compared with", summary["compare"]["bundle"]["path"]))
    parts = ["<h2>Run</h2>", _table(rows)]
    problems = [(reason, count) for reason, count in frames["skip_reasons"].items()]
    if problems:
        parts += ["<h3>Skipped frames</h3>", _table(problems, ("reason", "frames"))]
    if frames["damage"] or frames["errors"]:
        parts += ["<h3>Damage and errors</h3><ul>"] + [
            f"<li>{html.escape(d)}</li>" for d in frames["damage"] + frames["errors"]] + ["</ul>"]
    return "\n".join(parts)


def _figures_section(summary: dict[str, Any]) -> str:
    rows = []
    for label, _, figures, _ in _models(summary):
        lat, flick, conf = figures["latency_ms"], figures["flicker"], figures["confidence_mean"]
        rows.append((label, lat["p50"], lat["p95"], lat["p99"], lat["max"],
                     None if flick["mean"] is None else 100.0 * flick["mean"], conf["mean"]))
    return "<h2>Figures</h2>" + _table(rows, ("model", "latency p50 (ms)", "p95", "p99", "max",
                                               "flicker mean (%)", "confidence mean"))


def _scores_section(summary: dict[str, Any]) -> str:
    parts = []
    entries = _truth_entries(summary)
    if entries:
        rows = [(label, doc["ground_truth"]["mIoU"], doc["ground_truth"]["accuracy"],
                 doc["ground_truth"]["frames_scored"]) for label, doc, _ in entries]
        parts += ["<h2>Ground truth</h2>",
                  _table(rows, ("model", "mIoU (%)", "accuracy (%)", "frames scored"))]
    elif "ground_truth" in summary:
        gt = summary["ground_truth"]
        parts.append(f"<h2>Ground truth</h2><p>No frame could be scored "
                     f"({gt['frames_without_truth']} frames had no matching label image).</p>")
    agreement = summary.get("compare", {}).get("agreement")
    if agreement:
        parts += ["<h2>Agreement between the models</h2>",
                  _table([(agreement["accuracy"], agreement["mIoU"])],
                         ("pixels with the same (matched) label (%)", "mIoU between models (%)"))]
    return "\n".join(parts)


def write_html(folder: Path, summary: dict[str, Any], plots: Sequence[str],
               video: str | None) -> Path:
    images = "\n".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots)
    video_html = (f'<h2>Overlay video</h2><p><video src="{video}" controls width="800"></video>'
                  f'<br><a href="{video}">{video}</a> (MPEG-4; if the browser does not play it, '
                  "open it in a media player)</p>" if video else "")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>uwstego replay: {html.escape(summary['bag'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:.2em .6em}}
img{{max-width:100%}}</style></head><body>
<h1>Replay of {html.escape(summary['bag'])}</h1>
{_run_section(summary)}
{_figures_section(summary)}
{_scores_section(summary)}
<h2>Plots</h2>
{images}
{video_html}
<p>Every figure is in <a href="summary.json">summary.json</a>.</p>
</body></html>
"""
    return write_text_atomic(folder / "index.html", page)


def write_report(folder: Path, summary: dict[str, Any]) -> None:
    """Plots and the HTML page into ``folder`` (the video is already there, if any)."""
    plots = write_plots(folder, summary)
    video = VIDEO_FILE if (folder / VIDEO_FILE).is_file() else None
    summary["outputs"]["plots"] = plots
    summary["outputs"]["video"] = video
    write_html(folder, summary, plots, video)
