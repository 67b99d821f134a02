"""``uwstego survey``: replay and survey many dives (a campaign) on one machine or a cluster."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uwstego.backends import BACKEND_NAMES
from uwstego.replay.settings import ReplaySettings
from uwstego.survey.campaign import CampaignSettings, run_campaign
from uwstego.survey.navigation import DEFAULT_MAX_GAP_S

log = logging.getLogger(__name__)


def add_navigation_options(p: argparse.ArgumentParser) -> None:
    """The navigation options ``replay`` and ``survey`` share."""
    p.add_argument("--nav-topic", help="navigation topic (nav_msgs/Odometry or "
                   "sensor_msgs/NavSatFix); default: the bag's only NavSatFix topic, else its "
                   "only Odometry topic")
    p.add_argument("--max-nav-gap", type=float, default=DEFAULT_MAX_GAP_S, metavar="S",
                   help="a frame further than this from navigation messages on both sides has "
                        "no position (counted and reported)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "survey", help="replay many dives and map percent cover along their tracks",
        description="A campaign: every bag is replayed through the bundle (with a report) and "
                    "joined with its navigation: a per-frame table of position and percent "
                    "cover per class (CSV, and GeoJSON for geographic navigation), per dive and "
                    "for the campaign (campaign.csv, campaign_map.png, index.html). Runs on a "
                    "local Dask cluster (one worker per core) or on a running Dask scheduler. "
                    "Rerunning the same command resumes: finished dives are kept.")
    p.add_argument("bags", type=Path, nargs="+", help="rosbag2 folders (or synth dive folders)")
    p.add_argument("--bundle", type=Path, required=True, help="deploy bundle folder")
    p.add_argument("--out", type=Path, required=True, help="campaign folder (created or resumed)")
    add_navigation_options(p)
    p.add_argument("--gt-topic", help="ground-truth label topic, for the percent-cover error")
    p.add_argument("--workers", type=int, default=0,
                   help="processes of the local cluster (default: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler (tcp://host:8786) instead of a "
                        "local cluster")
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference backend")
    p.add_argument("--every", type=int, default=1, metavar="N", help="use every N-th frame")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime threads per dive (default: the cores divided among the "
                        "local workers)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    replay = ReplaySettings(backend=args.backend, every=args.every, gt_topic=args.gt_topic,
                            threads=args.threads, nav_topic=args.nav_topic,
                            max_nav_gap_s=args.max_nav_gap, progress=False)
    settings = CampaignSettings(bundle=args.bundle, replay=replay, workers=args.workers,
                                scheduler=args.scheduler)
    outcomes = run_campaign(args.bags, args.out, settings)
    failed = [o for o in outcomes if o.status == "failed"]
    kept = sum(o.status == "resumed" for o in outcomes)
    log.info("campaign in %s: %d dives done, %d kept from an earlier run, %d failed; report %s",
             args.out, len(outcomes) - kept - len(failed), kept, len(failed),
             args.out / "index.html")
    if failed:
        log.error("%d of %d dives failed (see %s): %s", len(failed), len(outcomes),
                  args.out / "campaign.json",
                  "; ".join(f"{o.name}: {o.error}" for o in failed))
        return 1
    return 0
