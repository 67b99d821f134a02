"""The replay report: PNG plots and one HTML page, drawn from the summary document alone.

The report reads the :class:`~edge.replay.summary.ReplaySummary` and never changes it; it returns
the files it wrote, for the summary that is saved next to it. matplotlib is imported here only,
so a vehicle without it replays as long as it asks for no report. With compared bundles every
figure shows every model (overlaid, or side by side where overlaying would hide one of them).
A run that processed no frame gets a page that says so and why, and no plots.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_path, write_text_atomic
from edge.replay.novelty import NOVELTY_PLOT, has_novelty, plot_novelty
from edge.replay.objects_section import objects_section
from edge.replay.summary import ModelDoc, ReplaySummary, Scored, model_labels
from edge.replay.video import find_video

# One colour per model, in the summary's order (matplotlib's tab10).
MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PERCENTILE_STYLES = {"p50": "-", "p95": "--", "p99": ":"}
CONFUSION_PLOT = "confusion.png"


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


def _colored(summary: ReplaySummary) -> list[tuple[ModelDoc, str, str]]:
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


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        # "tight" grows the picture to hold the legends placed outside the axes.
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _latency(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path) -> None:
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [2, 1]})
    for model, name, color in _colored(summary):
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
    _save(fig, path)
    plt.close(fig)


def _coverage(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path) -> None:
    colored = _colored(summary)
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
    _save(fig, path)
    plt.close(fig)


def _lines(plt: Any, summary: ReplaySummary, t: np.ndarray, path: Path, key: str,
           ylabel: str, title: str, band: str | None = None, scale: float = 1.0) -> None:
    fig, ax = plt.subplots(figsize=(12, 3.5))
    for model, name, color in _colored(summary):
        values = _series(getattr(model.series, key)) * scale
        ax.plot(t, values, ".-", ms=3, lw=0.8, color=color, label=name)
        if band is not None:
            ax.fill_between(t, _series(getattr(model.series, band)) * scale, values,
                            color=color, alpha=0.15, label=f"{name}: 5th percentile to mean")
    ax.set(xlabel="bag time (s)", ylabel=ylabel, title=title)
    _outside(ax)
    fig.tight_layout()
    _save(fig, path)
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
    _save(fig, path)
    plt.close(fig)


def _confusion(plt: Any, scored: Sequence[tuple[ModelDoc, str, Scored]], path: Path) -> None:
    """Per ground-truth class, the share of its pixels each cluster took (columns sum to 100)."""
    fig, axes = plt.subplots(1, len(scored), figsize=(6.5 * len(scored), 5.5), squeeze=False)
    for ax, (model, name, scores) in zip(axes[0], scored, strict=True):
        counts = np.array(scores.confusion, dtype=np.float64)
        totals = counts.sum(axis=0, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) * 100.0
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100, aspect="auto")
        truth_names = list(scores.per_class_iou)
        ax.set_xticks(range(len(truth_names)), truth_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(model.bundle.classes)), model.bundle.classes, fontsize=7)
        ax.set(xlabel="ground-truth class", ylabel=f"cluster of {name}",
               title=f"Confusion: {name} (% of each class's pixels)")
        for gt_class, cluster in enumerate(scores.assignment):
            if cluster < share.shape[0] and gt_class < share.shape[1]:
                ax.add_patch(plt.Rectangle((gt_class - 0.5, cluster - 0.5), 1, 1, fill=False,
                                           ec="#d62728", lw=1.5))
        if share.size <= 400:
            for (row, col), value in np.ndenumerate(share):
                if value >= 0.5:
                    ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if value > 60 else "black")
        fig.colorbar(image, ax=ax, label="pixels of the ground-truth class (%)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _truth_scores(summary: ReplaySummary) -> list[tuple[ModelDoc, str, Scored, str]]:
    """Models scored against the ground truth: (model, name, scores, colour)."""
    return [(m, name, m.ground_truth.scores, color) for m, name, color in _colored(summary)
            if m.ground_truth is not None and m.ground_truth.scores is not None
            and m.ground_truth.scores.mIoU is not None]


def _agreements(summary: ReplaySummary) -> list[tuple[ModelDoc, str, Scored, str]]:
    return [(m, name, m.agreement, color) for m, name, color in _colored(summary)
            if m.agreement]


def write_plots(folder: Path, summary: ReplaySummary) -> tuple[str, ...]:
    """Draw every plot the summary has data for; returns the file names (none without frames)."""
    if not summary.frames.processed:
        return ()
    plt = _pyplot()
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
        plot_novelty(plt, _colored(summary), t, folder / NOVELTY_PLOT, _save)
        written.append(NOVELTY_PLOT)
    truth = _truth_scores(summary)
    if truth:
        _scores(plt, t, folder / "ground_truth.png", "Scores against ground truth per frame",
                [(name, scores, color) for _, name, scores, color in truth])
        written.append("ground_truth.png")
        with_matrix = [(m, name, scores) for m, name, scores, _ in truth if scores.confusion]
        if with_matrix:
            _confusion(plt, with_matrix, folder / CONFUSION_PLOT)
            written.append(CONFUSION_PLOT)
    agreements = _agreements(summary)
    if agreements:
        first = _colored(summary)[0][1]
        _scores(plt, t, folder / "agreement.png",
                f"Label agreement with {first} per frame (after matching)",
                [(f"{name} agreement", scores, color) for _, name, scores, color in agreements])
        written.append("agreement.png")
    return tuple(written)


# -- HTML ------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


class Raw(str):
    """HTML that a table cell takes as it is (built here, from escaped parts)."""


def _cell(value: Any) -> str:
    return value if isinstance(value, Raw) else _fmt(value)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    head = ("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            if header else "")
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{head}{body}</table>"


def _swatch(rgb: Sequence[int]) -> Raw:
    r, g, b = (int(c) for c in rgb)
    return Raw(f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>')


def _model_name(name: str, color: str) -> Raw:
    return Raw(f'<span class="model" style="border-color:{color}">{html.escape(name)}</span>')


def _provenance(provenance: Mapping[str, Any]) -> Raw:
    if not provenance:
        return Raw("–")
    items = "".join(f"<li>{html.escape(str(k))}: {html.escape(_short(v))}</li>"
                    for k, v in provenance.items())
    return Raw(f'<ul class="facts">{items}</ul>')


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _run_section(summary: ReplaySummary) -> str:
    frames = summary.frames
    colored = _colored(summary)  # none: stopped while the models loaded
    rows: list[tuple[str, Any]] = [
        ("bag", summary.bag), ("topic", f"{summary.topic} ({summary.topic_type})")]
    for model, name, color in colored:
        what = ("bundle under test" if model is colored[0][0]
                else f"compared with (output topics: {model.role}/)")
        rows += [(what, Raw(f"{_model_name(name, color)} {html.escape(model.bundle.path)}")),
                 ("  model sha256", model.bundle.model_sha256[:16]),
                 ("  provenance", _provenance(model.bundle.provenance)),
                 ("  backend", ", ".join(f"{k} {v}" for k, v in model.bundle.backend.items()))]
    rows += [("stopped", summary.stopped), ("frames to process", frames.to_process),
             ("frames processed", frames.processed), ("frames skipped", frames.skipped),
             ("damaged parts of the bag", len(frames.damage)),
             ("wall time (s)", summary.wall_s),
             ("throughput (frames/s)", summary.throughput_fps)]
    truth = summary.models[0].ground_truth if summary.models else None
    if truth is not None:
        rows.append(("ground truth", f"{truth.source} ({truth.n_classes or '?'} classes)"))
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
    for model, name, color in _colored(summary):
        f = model.figures
        lat, flick = f.latency_ms, f.flicker
        novel = f.novel_fraction.mean
        rows.append((_model_name(name, color), lat.p50, lat.p95, lat.p99, lat.max,
                     None if flick.mean is None else 100.0 * flick.mean, f.confidence_mean.mean,
                     None if novel is None else 100.0 * novel))
    return "<h2>Figures</h2>" + _table(rows, ("model", "latency p50 (ms)", "p95 (ms)",
                                               "p99 (ms)", "max (ms)", "flicker mean (%)",
                                               "confidence mean (cosine)",
                                               "novel pixels mean (%)"))


def _classes_section(summary: ReplaySummary) -> str:
    """Per model, per class: colour, coverage and, when scored, the matched truth class."""
    if not summary.frames.processed:
        return ""
    parts = ["<h2>Classes</h2>"]
    for model, name, color in _colored(summary):
        truth = model.ground_truth.scores if model.ground_truth else None
        matched: dict[int, tuple[str, float | None]] = {}
        if truth is not None:
            gt_names = list(truth.per_class_iou)
            for gt_class, cluster in enumerate(truth.assignment):
                if gt_class < len(gt_names):
                    matched[cluster] = (gt_names[gt_class], truth.per_class_iou[gt_names[gt_class]])
        rows = []
        for i, (cls, rgb) in enumerate(zip(model.bundle.classes, model.bundle.class_colors,
                                           strict=True)):
            share = model.figures.coverage_mean.get(cls)
            row: list[Any] = [i, _swatch(rgb), cls, None if share is None else 100.0 * share]
            if truth is not None:
                gt_name, iou = matched.get(i, (None, None))
                row += [gt_name if gt_name is not None else "(not matched)", iou]
            rows.append(row)
        header = ["id", "colour", "class", "coverage (% of pixels)"]
        if truth is not None:
            header += ["matched ground-truth class", "IoU (%)"]
        parts += [f"<h3>{_model_name(name, color)}</h3>", _table(rows, header)]
    return "\n".join(parts)


def _truth_classes(scored: Sequence[tuple[ModelDoc, str, Scored, str]]) -> str:
    """Per ground-truth class: the cluster of each model matched to it, and its IoU."""
    names = list(scored[0][2].per_class_iou)
    rows = []
    for gt_class, gt_name in enumerate(names):
        row: list[Any] = [gt_class, gt_name]
        for model, _, scores, _ in scored:
            cluster = scores.assignment[gt_class] if gt_class < len(scores.assignment) else None
            classes = model.bundle.classes
            matched = cluster is not None and cluster < len(classes)
            row += [Raw(f"{_swatch(model.bundle.class_colors[cluster])} "
                        f"{html.escape(classes[cluster])}") if matched else "(none)",
                    scores.per_class_iou.get(gt_name)]
        rows.append(row)
    header = ["id", "ground-truth class"]
    for _, name, _, _ in scored:
        header += [f"{name}: matched cluster", f"{name}: IoU (%)"]
    return "<h3>Ground-truth classes</h3>" + _table(rows, header)


def _scores_section(summary: ReplaySummary, plots: Sequence[str]) -> str:
    parts = []
    scored = _truth_scores(summary)
    truth = summary.models[0].ground_truth if summary.models else None
    if scored:
        rows = [(_model_name(name, color), scores.mIoU, scores.accuracy,
                 m.ground_truth.frames_scored, m.ground_truth.n_classes)
                for m, name, scores, color in scored if m.ground_truth is not None]
        parts += ["<h2>Ground truth</h2>",
                  _table(rows, ("model", "mIoU (%)", "accuracy (%)", "frames scored",
                                "ground-truth classes"))]
        parts.append(_truth_classes(scored))
        if CONFUSION_PLOT in plots:
            parts.append(f'<p><img src="{CONFUSION_PLOT}" alt="confusion matrix"><br>Each '
                         "column: how one ground-truth class's pixels were labelled; the red "
                         "boxes are the matching used for the scores.</p>")
    elif truth is not None:
        parts.append(f"<h2>Ground truth</h2><p>No frame could be scored "
                     f"({truth.frames_without_truth} frames had no matching label image).</p>")
    agreements = _agreements(summary)
    if agreements:
        first = html.escape(_colored(summary)[0][1])
        parts += [f"<h2>Agreement with {first}</h2>",
                  _table([(_model_name(name, color), scores.accuracy, scores.mIoU,
                           len(scores.per_class_iou))
                          for _, name, scores, color in agreements],
                         ("model", "pixels with the same (matched) label (%)",
                          "mIoU between models (%)", f"classes of {first}"))]
    return "\n".join(parts)


def _looks_section(summary: ReplaySummary) -> str:
    looks = summary.outputs.looks
    if not looks:
        return ""
    parts = ["<h2>Frames to look at</h2>",
             "<p>Picked from the per-frame figures; each strip is the input, every model's "
             "overlay and the ground truth when there is one (in the colours of the matched "
             "clusters). Click a strip for the full-size image.</p>", '<div class="looks">']
    for look in looks:
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in look.reasons)
        parts.append(
            f'<figure><a href="{html.escape(look.image)}"><img src="{html.escape(look.thumbnail)}"'
            f' alt="frame {look.index}"></a><figcaption><strong>t = {look.t_s:.2f} s</strong> '
            f"(frame {look.index})<ul>{reasons}</ul></figcaption></figure>")
    parts.append("</div>")
    return "\n".join(parts)


def _video_section(video: str | None) -> str:
    if not video:
        return ""
    kind = "video/webm" if video.endswith(".webm") else "video/mp4"
    return (f'<h2>Overlay video</h2><p><video controls muted preload="auto">'
            f'<source src="{video}" type="{kind}"></video><br><a href="{video}">{video}</a> '
            "(each panel is captioned with its model and the frame's time)</p>")


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1500px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .6em}
img,video{max-width:100%}video{max-height:80vh}
.swatch{display:inline-block;width:1.4em;height:1em;border:1px solid #444}
.model{border-left:.6em solid;padding-left:.3em;font-weight:bold}
ul.facts{margin:0;padding-left:1.2em;font-size:90%}
.looks{display:flex;flex-wrap:wrap;gap:1em}.looks figure{margin:0;max-width:700px}
.looks figcaption ul{margin:.2em 0;padding-left:1.2em}
img.thumb{max-height:64px}"""


def write_html(folder: Path, summary: ReplaySummary, plots: Sequence[str],
               video: str | None) -> Path:
    images = "\n".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots
                       if p != CONFUSION_PLOT)
    plots_html = f"<h2>Plots</h2>\n{images}" if plots else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>uwstego replay: {html.escape(summary.bag)}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style></head><body>
<h1>Replay of {html.escape(summary.bag)}</h1>
{_run_section(summary)}
{_figures_section(summary)}
{_scores_section(summary, plots)}
{_classes_section(summary)}
{_video_section(video)}
{_looks_section(summary)}
{objects_section(folder)}
{plots_html}
<p>Every figure is in <a href="summary.json">summary.json</a>.</p>
</body></html>
"""
    return write_text_atomic(folder / "index.html", page)


@dataclass(frozen=True)
class ReportFiles:
    plots: tuple[str, ...]
    video: str | None


def write_report(folder: Path, summary: ReplaySummary) -> ReportFiles:
    """Plots and the HTML page into ``folder`` (the video and the frames to look at are
    already there, if any)."""
    plots = write_plots(folder, summary)
    video = find_video(folder)
    write_html(folder, summary, plots, video)
    return ReportFiles(plots, video)
