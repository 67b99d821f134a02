"""The replay report: the HTML page over the plots, drawn from the summary document alone.

The report reads the :class:`~uwstego.replay.summary.ReplaySummary` and never changes it; it returns
the files it wrote, for the summary that is saved next to it. The plots come from
:mod:`uwstego.replay.plots`. A run that processed no frame gets a page that says so and why.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uwstego.atomic import write_text_atomic
from uwstego.replay.objects_section import objects_section
from uwstego.replay.plots import (
    CONFUSION_PLOT,
    agreements,
    colored_models,
    truth_scores,
    write_plots,
)
from uwstego.replay.summary import ModelDoc, ReplaySummary, Scored
from uwstego.replay.video import find_video
from uwstego.survey.section import survey_section


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
    colored = colored_models(summary)  # none: stopped while the models loaded
    rows: list[tuple[str, Any]] = [
        ("bag", summary.bag), ("topic", f"{summary.topic} ({summary.topic_type})")]
    for model, name, color in colored:
        what = ("bundle under test" if model is colored[0][0]
                else f"compared with (output topics: {model.role}/)")
        rows += [(what, Raw(f"{_model_name(name, color)} {html.escape(model.bundle.path)}")),
                 *((f"  {fact}", value) for fact, value in model.bundle.trust.items()),
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


def _warnings_section(summary: ReplaySummary) -> str:
    """What a reviewer must read before any figure, at the top of the page."""
    return "\n".join(f'<p class="warning"><strong>Warning:</strong> {html.escape(w)}</p>'
                     for w in summary.warnings)


def _figures_section(summary: ReplaySummary) -> str:
    if not summary.frames.processed:
        return ""
    rows = []
    for model, name, color in colored_models(summary):
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
    for model, name, color in colored_models(summary):
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
    scored = truth_scores(summary)
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
                         "row: how one ground-truth class's pixels were labelled (rows: ground "
                         "truth, columns: clusters, as in uwstego evaluate); the red boxes are "
                         "the matching used for the scores.</p>")
    elif truth is not None:
        parts.append(f"<h2>Ground truth</h2><p>No frame could be scored "
                     f"({truth.frames_without_truth} frames had no matching label image).</p>")
    compared = agreements(summary)
    if compared:
        first = html.escape(colored_models(summary)[0][1])
        parts += [f"<h2>Agreement with {first}</h2>",
                  _table([(_model_name(name, color), scores.accuracy, scores.mIoU,
                           len(scores.per_class_iou))
                          for _, name, scores, color in compared],
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
.warning{background:#fde8e8;border-left:.5em solid #d62728;padding:.5em 1em;font-size:110%}
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
{_warnings_section(summary)}
{_run_section(summary)}
{_figures_section(summary)}
{_scores_section(summary, plots)}
{_classes_section(summary)}
{_video_section(video)}
{_looks_section(summary)}
{survey_section(folder)}
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
