"""A campaign: many dives replayed and surveyed, in parallel on a Dask cluster, resumable.

Layout of the output folder (docs/survey.md §6)::

    campaign.json       settings and every dive's status and figures (rewritten as dives end)
    campaign.csv        one row per dive: status, duration, distance, frames, percent cover per
                        class, novel share
    campaign_map.png    every dive's track coloured by dominant class    (with matplotlib)
    index.html          the campaign report: the table, the map, links to each dive
    dives/NAME/         report/ (the replay report, its survey/ in it: edge/survey/dive.py)

Each dive is one task; a dive's folder appears whole when the dive has finished (a staging
folder and a swap, ``edge/atomic.py``), so a kill loses nothing finished and a rerun of the same
command does only the dives without a folder; one campaign writes an output folder at a time
(``edge/writer_lock.py``). A dive that fails is reported, the others go on.
The cluster: a local one of ``workers`` processes (loopback only), or a running Dask scheduler
given by its address (docs/survey.md §6 says why Dask).
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from uwstego.atomic import atomic_dir, write_bytes_atomic, write_json_atomic, write_text_atomic
from uwstego.bags import resolve_bag_path
from uwstego.bundle import load_bundle
from uwstego.contract import SYNTH_BAG_DIR
from uwstego.replay.settings import ReplaySettings
from uwstego.survey.dive import SURVEY_JSON, survey_dive
from uwstego.survey.section import SURVEY_DIR
from uwstego.survey.table import read_csv
from uwstego.writer_lock import claim

log = logging.getLogger(__name__)

DIVES_DIR = "dives"
DONE_FILE = "done.json"


@dataclass(frozen=True)
class CampaignSettings:
    """Everything a campaign run is made of, besides its bags and output folder."""

    bundle: Path
    replay: ReplaySettings = field(default_factory=lambda: ReplaySettings(progress=False))
    workers: int = 0            # local cluster processes; 0: one per core
    scheduler: str | None = None  # address of a running Dask scheduler instead

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    def local_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class DiveOutcome:
    name: str
    bag: str
    status: str                 # "done" (this run), "resumed" (an earlier run's) or "failed"
    error: str | None = None
    survey: dict[str, Any] | None = None
    wall_s: float | None = None


def dive_names(bags: Sequence[Path]) -> list[str]:
    """A folder name per bag: the bag folder's name (its parent's for a synthetic dive's
    ``bag/``), made unique with ``-2``, ``-3`` ..."""
    names: list[str] = []
    for bag in bags:
        base = bag.parent.name if bag.name == SYNTH_BAG_DIR else bag.name
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def process_dive(bag: str, folder: str, bundle: str,
                 replay_settings: dict[str, Any]) -> dict[str, Any]:
    """One dive, on a worker: replay with its report (which holds the survey when the bag has
    navigation), ``done.json``; the folder appears whole at the end. Returns what
    ``done.json`` holds."""
    from uwstego.replay.loop import replay

    started = time.perf_counter()
    settings = ReplaySettings.from_dict(replay_settings)
    with atomic_dir(folder) as staging:
        result = replay(bag, bundle, settings, report_dir=staging / "report")
        if result.summary.stopped != "completed":
            raise RuntimeError(f"the replay stopped: {result.summary.stopped}")
        survey_json = staging / "report" / SURVEY_DIR / SURVEY_JSON
        if survey_json.is_file():
            survey = json.loads(survey_json.read_text())
        else:  # no navigation: the dive's row still has its frames and cover
            survey = survey_dive(result.summary, bag, staging / "report" / SURVEY_DIR,
                                 settings.nav_topic, settings.max_nav_gap_s).to_dict()
        done = {"bag": bag, "bundle": bundle, "replay": replay_settings, "survey": survey,
                "wall_s": round(time.perf_counter() - started, 3)}
        write_json_atomic(staging / DONE_FILE, done)
    return done


def _finished(folder: Path, bag: Path, bundle: Path) -> dict[str, Any] | None:
    """The ``done.json`` of an earlier run of this very dive (same bag and bundle), if any."""
    try:
        done = json.loads((folder / DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return done if done.get("bag") == str(bag) and done.get("bundle") == str(bundle) else None


@contextlib.contextmanager
def dask_client(settings: CampaignSettings) -> Iterator[Any]:
    """A Dask client: to the scheduler of ``settings``, or to a local cluster of
    ``local_workers()`` single-threaded processes listening on loopback only."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise RuntimeError("uwstego survey needs Dask distributed: pip install "
                           "'uwstego[survey]'") from exc
    # Dask narrates every connection and shutdown at INFO and WARNING; what matters to the user
    # (a dive failed) is reported by the campaign itself.
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    dask_log.setLevel(logging.ERROR)
    try:
        if settings.scheduler:
            with Client(settings.scheduler) as client:
                yield client
            return
        with LocalCluster(n_workers=settings.local_workers(), threads_per_worker=1,
                          processes=True, host="127.0.0.1", dashboard_address=None,
                          silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
            yield client
    finally:
        dask_log.setLevel(level)


def run_campaign(bags: Sequence[str | Path], out: str | Path,
                 settings: CampaignSettings) -> list[DiveOutcome]:
    """Replay and survey every bag into ``out`` (see the module text)."""
    out = Path(out)
    paths = [resolve_bag_path(b) for b in bags]
    bundle = Path(settings.bundle).resolve()
    load_bundle(bundle)  # a bad bundle is one line here, not one failure per dive
    names = dive_names(paths)
    outcomes: dict[str, DiveOutcome] = {}
    # One campaign per output folder; each dive's folder is written through atomic_dir, which
    # also removes the staging folder a killed run left for that dive.
    with claim(out):
        dives = out / DIVES_DIR
        dives.mkdir(parents=True, exist_ok=True)
        todo = []
        for name, bag in zip(names, paths, strict=True):
            done = _finished(dives / name, bag.resolve(), bundle)
            if done is None:
                todo.append((name, bag.resolve()))
            else:
                outcomes[name] = DiveOutcome(name, str(bag), "resumed", survey=done["survey"],
                                             wall_s=done.get("wall_s"))
        if outcomes:
            log.info("%d of %d dives were finished by an earlier run and are kept",
                     len(outcomes), len(paths))
        if todo:
            _run(todo, dives, bundle, settings, outcomes, out, paths, names)
        ordered = [outcomes[n] for n in names]
        write_campaign(out, ordered, settings)
    return ordered


def _run(todo: list[tuple[str, Path]], dives: Path, bundle: Path, settings: CampaignSettings,
         outcomes: dict[str, DiveOutcome], out: Path, paths: Sequence[Path],
         names: Sequence[str]) -> None:
    from distributed import as_completed

    replay_settings = settings.replay
    if replay_settings.threads == 0 and not settings.scheduler:
        # Workers share this machine's cores: each gets its share, not all of them.
        share = max(1, (os.cpu_count() or 1) // settings.local_workers())
        replay_settings = replace(replay_settings, threads=share)
    as_dict = replace(replay_settings, progress=False).to_dict()
    with dask_client(settings) as client:
        log.info("campaign: %d dives on %s", len(todo), client.dashboard_link
                 if settings.scheduler else f"a local cluster of {settings.local_workers()} "
                 "workers (loopback)")
        futures = {client.submit(process_dive, str(bag), str(dives / name), str(bundle), as_dict,
                                 key=f"dive-{name}-{time.time_ns()}", pure=False): (name, bag)
                   for name, bag in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="dives",
                           unit="dive"):
            name, bag = futures[future]
            try:
                done = future.result()
            except Exception as exc:  # one dive's failure must not stop the others
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("dive %s (%s) failed: %s", name, bag, reason)
                outcomes[name] = DiveOutcome(name, str(bag), "failed", error=reason)
            else:
                outcomes[name] = DiveOutcome(name, str(bag), "done", survey=done["survey"],
                                             wall_s=done["wall_s"])
            # After every dive, so that a kill keeps the campaign's view of what is finished.
            write_json_atomic(out / "campaign.json", _document(
                [outcomes[n] for n in names if n in outcomes], settings))


def _document(outcomes: Sequence[DiveOutcome], settings: CampaignSettings) -> dict[str, Any]:
    doc = asdict(settings)
    doc["bundle"] = str(settings.bundle)
    doc["replay"] = settings.replay.to_dict()
    return {"settings": doc, "dives": [asdict(o) for o in outcomes]}


def _classes(outcomes: Sequence[DiveOutcome]) -> list[str]:
    for o in outcomes:
        if o.survey:
            return list(o.survey["mean_cover_pct"])
    return []


def campaign_rows(outcomes: Sequence[DiveOutcome]) -> tuple[list[str], list[list[Any]]]:
    classes = _classes(outcomes)
    header = ["dive", "bag", "status", "duration_s", "distance_m", "frames",
              "frames_without_position", *(f"cover_{c}_pct" for c in classes), "novel_pct",
              "error"]
    rows = []
    for o in outcomes:
        s = o.survey or {}
        cover = s.get("mean_cover_pct", {})
        rows.append([o.name, o.bag, o.status, s.get("duration_s", ""), s.get("distance_m", ""),
                     s.get("frames", ""), s.get("frames_without_position", ""),
                     *(_blank(cover.get(c)) for c in classes), _blank(s.get("novel_pct")),
                     o.error or ""])
    return header, rows


def _blank(value: Any) -> Any:
    return "" if value is None else value


def write_campaign(out: Path, outcomes: Sequence[DiveOutcome],
                   settings: CampaignSettings) -> None:
    """``campaign.json``, ``campaign.csv``, the map and ``index.html``."""
    write_json_atomic(out / "campaign.json", _document(outcomes, settings))
    header, rows = campaign_rows(outcomes)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes_atomic(out / "campaign.csv", buf.getvalue().encode())
    map_file = _campaign_map(out, outcomes, settings)
    write_text_atomic(out / "index.html", _page(outcomes, header, rows, map_file))


def _campaign_map(out: Path, outcomes: Sequence[DiveOutcome],
                  settings: CampaignSettings) -> str | None:
    tables = [read_csv(out / DIVES_DIR / o.name / "report" / SURVEY_DIR / "survey.csv")
              for o in outcomes if o.survey]
    tables = [t for t in tables if t.positions.valid.any()]
    if not tables:
        return None
    try:
        import matplotlib  # noqa: F401  (the replay extra)
    except ImportError:
        log.warning("no campaign map: matplotlib is not installed (the replay extra)")
        return None
    from uwstego.survey.figures import track_map

    bundle = load_bundle(settings.bundle)
    colors = {c.name: c.color for c in bundle.meta.classes}
    return track_map(tables, colors, out / "campaign_map.png",
                     title=f"{len(tables)} dives, coloured by dominant class").name


def _page(outcomes: Sequence[DiveOutcome], header: list[str], rows: list[list[Any]],
          map_file: str | None) -> str:
    esc = html.escape
    failed = [o for o in outcomes if o.status == "failed"]
    cells = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for o, row in zip(outcomes, rows, strict=True):
        link = (f'<a href="{DIVES_DIR}/{esc(o.name)}/report/index.html">{esc(o.name)}</a>'
                if o.status != "failed" else esc(o.name))
        body.append("<tr>" + f"<td>{link}</td>"
                    + "".join(f"<td>{esc(str(v))}</td>" for v in row[1:]) + "</tr>")
    warning = (f'<p class="warn">{len(failed)} of {len(outcomes)} dives failed: '
               + "; ".join(f"{esc(o.name)}: {esc(o.error or '')}" for o in failed) + "</p>"
               if failed else "")
    figure = f'<img src="{map_file}" alt="campaign map">' if map_file else \
        "<p>No dive has positions: no map.</p>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>uwstego campaign</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}}.warn{{color:#a00}}</style></head>
<body><h1>Campaign: {len(outcomes)} dives</h1>{warning}
<p>Percent cover per class is the dive's mean over its frames; per-frame tables, GeoJSON and
figures are in each dive's <code>report/survey/</code> folder (docs/survey.md).</p>
<table><tr>{cells}</tr>{''.join(body)}</table>
<h2>Map</h2>{figure}</body></html>
"""

