"""The per-frame survey table: where each frame was and what it saw (docs/survey.md §4).

One row per replayed frame: its index and stamp, the position (east/north/depth in metres, and
latitude/longitude when the navigation is geographic), the distance travelled, the percent cover
of each class, the dominant class and the novel share. Written as CSV (every row) and, when
positions are geographic, as GeoJSON (RFC 7946: a FeatureCollection of Points, longitude first,
one per frame with a position; opens in QGIS).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uwstego.atomic import write_bytes_atomic
from uwstego.survey.geo import to_local
from uwstego.survey.navigation import Positions


@dataclass(frozen=True)
class SurveyTable:
    """Per-frame survey figures; arrays are aligned with :attr:`index`. ``cover`` is in percent
    (frames x classes), NaN where a frame has no figure."""

    index: np.ndarray        # frame index on the camera topic
    stamp_ns: np.ndarray     # header stamp
    positions: Positions
    classes: tuple[str, ...]
    cover: np.ndarray
    novel: np.ndarray | None = None  # percent of pixels beyond their novelty threshold

    @property
    def geographic(self) -> bool:
        return self.positions.origin is not None

    @property
    def frames_without_position(self) -> int:
        return int((~self.positions.valid).sum())

    def dominant(self) -> list[str]:
        """The class with the largest cover per frame ("" where there is no figure)."""
        out = []
        for row in self.cover:
            out.append("" if np.all(np.isnan(row)) else self.classes[int(np.nanargmax(row))])
        return out

    def mean_cover(self) -> dict[str, float | None]:
        """Percent cover per class over the frames that have one (a dive's figure)."""
        means = {}
        for k, name in enumerate(self.classes):
            column = self.cover[:, k]
            column = column[~np.isnan(column)]
            means[name] = round(float(column.mean()), 3) if column.size else None
        return means

    def header(self) -> list[str]:
        geo = ["latitude", "longitude"] if self.geographic else []
        novel = ["novel_pct"] if self.novel is not None else []
        return ["index", "stamp_ns", "time_s", "east_m", "north_m", "depth_m", *geo,
                "distance_m", "has_position", *(f"cover_{c}_pct" for c in self.classes),
                "dominant", *novel]

    def rows(self) -> list[list[object]]:
        p = self.positions
        lat, lon = p.latlon() if self.geographic else (None, None)
        distance = p.distance_m()
        dominant = self.dominant()
        t0 = int(self.stamp_ns[0]) if len(self.stamp_ns) else 0
        rows = []
        for i in range(len(self.index)):
            geo = [_num(lat[i], 8), _num(lon[i], 8)] if lat is not None else []
            novel = [_num(self.novel[i], 3)] if self.novel is not None else []
            rows.append([int(self.index[i]), int(self.stamp_ns[i]),
                         round((int(self.stamp_ns[i]) - t0) / 1e9, 6),
                         _num(p.east[i], 4), _num(p.north[i], 4), _num(p.depth[i], 4), *geo,
                         round(float(distance[i]), 4), bool(p.valid[i]),
                         *(_num(v, 3) for v in self.cover[i]), dominant[i], *novel])
        return rows


def _num(value: float, digits: int) -> float | str:
    """A CSV/JSON number, or the empty string for a missing one (JSON: see :func:`_json`)."""
    return "" if value is None or not math.isfinite(value) else round(float(value), digits)


def write_csv(table: SurveyTable, path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header())
    writer.writerows(table.rows())
    return write_bytes_atomic(path, buf.getvalue().encode())


def geojson(table: SurveyTable, properties: dict[str, object] | None = None) -> dict:
    """The table as a GeoJSON FeatureCollection (frames with a position only)."""
    if not table.geographic:
        raise ValueError("GeoJSON needs geographic positions (a NavSatFix navigation topic)")
    header = table.header()
    features = []
    for row in table.rows():
        props = {k: (None if v == "" else v) for k, v in zip(header, row, strict=True)}
        if not props["has_position"]:
            continue
        coords = [props["longitude"], props["latitude"], -float(props["depth_m"])]
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": coords},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features,
            **({"properties": properties} if properties else {})}


def write_geojson(table: SurveyTable, path: Path,
                  properties: dict[str, object] | None = None) -> Path:
    text = json.dumps(geojson(table, properties), allow_nan=False)
    return write_bytes_atomic(path, text.encode())


def cover_table(coverage: Sequence[Sequence[float]], classes: Sequence[str]) -> np.ndarray:
    """Per-frame coverage fractions (a replay's series, with an ``unknown`` share last for
    calibrated bundles) as percent per class of ``classes``."""
    if not coverage:
        return np.zeros((0, len(classes)))
    values = np.asarray(coverage, dtype=np.float64)
    return 100.0 * values[:, : len(classes)]


def read_csv(path: Path) -> SurveyTable:
    """A table back from :func:`write_csv` (for maps over many dives); ValueError naming the
    file when it is not one."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError("no rows")
        classes = tuple(k[len("cover_"):-len("_pct")] for k in rows[0]
                        if k.startswith("cover_") and k.endswith("_pct"))

        def column(name: str) -> np.ndarray:
            return np.array([float(r[name]) if r[name] != "" else np.nan for r in rows])

        valid = np.array([r["has_position"] == "True" for r in rows])
        east, north = column("east_m"), column("north_m")
        origin = None
        if "latitude" in rows[0]:
            # The positions were written relative to the track's first fix; the table is read
            # back in a frame of its own first position with a position.
            lat, lon = column("latitude"), column("longitude")
            first = int(np.flatnonzero(valid)[0]) if valid.any() else 0
            origin = (float(lat[first]), float(lon[first]))
            east, north = to_local(lat, lon, origin)
        positions = Positions(east, north, column("depth_m"), valid, origin)
        cover = np.stack([column(f"cover_{c}_pct") for c in classes], axis=1)
        novel = column("novel_pct") if "novel_pct" in rows[0] else None
        integers = {k: np.array([int(r[k]) for r in rows], dtype=np.int64)
                    for k in ("index", "stamp_ns")}
        return SurveyTable(integers["index"], integers["stamp_ns"], positions, classes, cover,
                           novel)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not a survey table ({exc})") from exc
