"""The survey section of a replay report (docs/survey.md §4): the dive's figures, the track map
and percent cover over distance, links to the per-frame CSV and GeoJSON."""

from __future__ import annotations

import html
import json
from pathlib import Path

from uwstego.survey.dive import SURVEY_JSON

SURVEY_DIR = "survey"


def survey_section(report: Path) -> str:
    """HTML for the report in ``report`` ("" when the replay had no navigation)."""
    path = report / SURVEY_DIR / SURVEY_JSON
    if not path.is_file():
        return ""
    doc = json.loads(path.read_text())
    esc = html.escape
    files = " · ".join(f'<a href="{SURVEY_DIR}/{esc(f)}">{esc(f)}</a>' for f in doc["files"]
                       if not f.endswith(".png"))
    images = "".join(f'<p><img src="{SURVEY_DIR}/{esc(f)}" alt="{esc(f)}"></p>'
                     for f in doc["files"] if f.endswith(".png"))
    cover = ", ".join(f"{esc(k)} {v:.1f} %" for k, v in doc["mean_cover_pct"].items()
                      if v is not None)
    notes = "".join(f'<p class="warn">{esc(n)}</p>' for n in doc["notes"])
    error = ""
    if doc.get("cover_error"):
        dive = doc["cover_error"]["dive"]
        error = ("<p>Percent-cover error against the ground truth (dive mean, points): "
                 + ", ".join(f"{esc(k)} {v:.2f}" for k, v in dive.items() if v is not None)
                 + "</p>")
    return (f"<h2>Survey</h2><p>Navigation {esc(str(doc['nav_topic']))}: "
            f"{doc['distance_m']:.1f} m travelled in {doc['duration_s']:.1f} s, "
            f"{doc['frames'] - doc['frames_without_position']} of {doc['frames']} frames "
            f"positioned. Mean percent cover: {cover}.</p>{notes}{error}<p>{files}</p>{images}")
