"""The report's objects section, drawn from the files in ``<report>/objects/`` alone.

Per source (each model with object classes, then the ground truth): counts per class, and the
most seen tracks of each class with when they were first and last seen, in how many frames, how
large they grew and a thumbnail at their largest; then, with ground truth, detection recall and
precision per true object class for every model (docs/objects.md "Scores").
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uwstego.replay.objects_run import INDEX_FILE, OBJECTS_DIR, THUMBS_PER_CLASS, TRUTH_ROLE


def _rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; cells are already escaped HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(value: Any) -> str:
    return "–" if value is None else html.escape(str(value))


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.1f}"


def _counts(doc: dict[str, Any]) -> str:
    rows = [(_text(name), _text(c["tracks"]), _text(c["detections"]), _text(c["frames_with"]))
            for name, c in doc["counts"].items()]
    return _rows(("class", "tracks", "detections", "frames with it"), rows)


def _tracks(doc: dict[str, Any]) -> str:
    shown = [t for t in doc["tracks"] if t["thumbnail"]]
    shown.sort(key=lambda t: (doc["object_classes"].index(t["class"]), -t["frames_seen"],
                              t["first_t_ns"]))
    rows = []
    for t in shown:
        thumb = html.escape(f"{OBJECTS_DIR}/{t['thumbnail']}")
        rows.append((f'<img class="thumb" src="{thumb}" alt="track {t["track_id"]}">',
                     _text(t["class"]), _text(t["track_id"]),
                     f"{t['first_t_s']:.2f} s (frame {t['first_index']})",
                     f"{t['last_t_s']:.2f} s (frame {t['last_index']})",
                     _text(t["frames_seen"]), _text(t["largest_area"])))
    if not rows:
        return "<p>No object was seen.</p>"
    return (f"<p>The {THUMBS_PER_CLASS} most seen tracks of each class, at their largest.</p>"
            + _rows(("thumbnail", "class", "track", "first seen", "last seen", "frames seen",
                     "largest area (px)"), rows))


def _scores(truth: dict[str, Any]) -> str:
    rows = []
    for entry in truth.get("detection_scores") or ():
        for s in entry["scores"]:
            rows.append((_text(entry["model"]), _text(s["class"]), _text(s["matched_cluster"]),
                         _text(s["true_objects"]), _text(s["detections"]), _text(s["matched"]),
                         _percent(s["recall"]), _percent(s["precision"])))
    if not rows:
        return ""
    threshold = truth["detection_scores"][0]["scores"][0]["iou_threshold"]
    return ("<h3>Detection of the true objects</h3><p>True objects: the connected regions of "
            "each ground-truth class; detections: those of the cluster matched to it, found "
            f"when their boxes overlap by IoU &ge; {threshold:.2f}.</p>"
            + _rows(("model", "ground-truth class", "matched cluster", "true objects",
                     "detections", "found", "recall (%)", "precision (%)"), rows))


def objects_section(report: Path) -> str:
    """The section's HTML, or "" when the replay recorded no objects."""
    index = report / OBJECTS_DIR / INDEX_FILE
    if not index.is_file():
        return ""
    docs = [json.loads((report / OBJECTS_DIR / name).read_text())
            for name in json.loads(index.read_text())["documents"]]
    parts = ["<h2>Objects</h2>",
             f'<p>Every track and every detection: <a href="{OBJECTS_DIR}/">{OBJECTS_DIR}/</a> '
             "(JSON and CSV per source).</p>"]
    for doc in docs:
        parts += [f"<h3>{_text(doc['source'])}: {_text(', '.join(doc['object_classes']))}</h3>",
                  _counts(doc), _tracks(doc)]
    truth = next((d for d in docs if d["role"] == TRUTH_ROLE), None)
    if truth is not None:
        parts.append(_scores(truth))
    return "\n".join(parts)
