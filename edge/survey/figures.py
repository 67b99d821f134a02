"""Survey figures, drawn as the report's plots are (matplotlib, the ``replay`` extra): the track
coloured by dominant class, and percent cover per class over the distance travelled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uwstego.replay.plots import pyplot, save_png
from uwstego.survey.geo import to_local
from uwstego.survey.table import SurveyTable

Color = Sequence[int]


def _rgb(color: Color | None) -> tuple[float, float, float]:
    return (0.5, 0.5, 0.5) if color is None else tuple(c / 255 for c in color[:3])  # type: ignore[return-value]


def _save(fig: Any, path: Path) -> Path:
    save_png(fig, path)
    pyplot().close(fig)
    return path


def _xy(table: SurveyTable, origin: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Metres east/north: of ``origin`` for geographic tracks (so that dives of a campaign share
    one frame), of the track's own frame otherwise."""
    if table.geographic and origin is not None:
        lat, lon = table.positions.latlon()
        return to_local(lat, lon, origin)
    return table.positions.east, table.positions.north


def track_map(tables: SurveyTable | Sequence[SurveyTable], colors: Mapping[str, Color],
              path: Path, title: str = "track, coloured by dominant class") -> Path:
    """One or several dives' tracks; each frame a dot in its dominant class's colour."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    seen: set[str] = set()
    tables = [tables] if isinstance(tables, SurveyTable) else list(tables)
    origin = tables[0].positions.origin if all(t.geographic for t in tables) else None
    for table in tables:
        x, y = _xy(table, origin)
        valid = table.positions.valid
        ax.plot(x[valid], y[valid], color="0.75", linewidth=0.8, zorder=1)
        dominant = np.array(table.dominant())
        for name in dict.fromkeys(dominant[valid]):
            if not name:
                continue
            pick = valid & (dominant == name)
            ax.scatter(x[pick], y[pick], s=12, color=_rgb(colors.get(name)), zorder=2,
                       label=None if name in seen else name)
            seen.add(name)
    where = (f" of {origin[0]:.6f}, {origin[1]:.6f}" if origin is not None
             else " in the navigation frame")
    ax.set_xlabel(f"east (m){where}")
    ax.set_ylabel("north (m)")
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    if seen:
        ax.legend(loc="best", fontsize=8, markerscale=1.5)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def cover_over_distance(table: SurveyTable, colors: Mapping[str, Color], path: Path) -> Path:
    """Stacked percent cover per class against the distance travelled."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    distance = table.positions.distance_m()
    cover = np.nan_to_num(table.cover)
    ax.stackplot(distance, cover.T, labels=table.classes,
                 colors=[_rgb(colors.get(c)) for c in table.classes])
    ax.set_xlabel("distance travelled (m)" if table.positions.valid.any()
                  else "distance travelled (m): no navigation")
    ax.set_ylabel("percent cover")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, max(float(distance[-1]), 1e-6) if len(distance) else 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title("percent cover per class along the track")
    return _save(fig, path)
