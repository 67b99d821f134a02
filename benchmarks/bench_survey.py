"""Campaign throughput: the same dives surveyed by a local Dask cluster of 1 and of 2 workers.

Renders ``--dives`` synthetic dives with navigation once, exports a tiny random bundle (the
figure measured is throughput, which does not depend on the weights), then runs
``run_campaign`` into a fresh folder per worker count and reports frames per second of the
whole campaign (replay, report and survey of every dive) and the ratio 2 workers / 1 worker.
Each worker's ONNX Runtime gets the cores divided among the workers (docs/survey.md §6).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.bundles import make_tiny_bundle
from uwstego.replay.settings import ReplaySettings
from uwstego.survey.campaign import CampaignSettings, run_campaign
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.synth.writer import write_dive

from timing import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dives", type=int, default=4)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = make_tiny_bundle(root / "bundle", camera=(width, height))
        bags = []
        for seed in range(args.dives):
            write_dive(DiveSettings(seed=seed, frames=args.frames, width=width, height=height,
                                    nav_origin=(43.1, 5.9)), root / f"dive{seed}", folders=False,
                       bag=True)
            bags.append(root / f"dive{seed}" / "bag")
        runs = {}
        for workers in args.workers:
            settings = CampaignSettings(bundle=bundle, workers=workers,
                                        replay=ReplaySettings(progress=False))
            t0 = time.perf_counter()
            outcomes = run_campaign(bags, root / f"campaign{workers}", settings)
            wall = time.perf_counter() - t0
            assert all(o.status == "done" for o in outcomes), outcomes
            frames = sum(o.survey["frames"] for o in outcomes if o.survey)
            runs[str(workers)] = {"wall_s": round(wall, 2), "frames": frames,
                                  "frames_per_s": round(frames / wall, 2)}
    result = {"benchmark": "survey", "cpus": os.cpu_count(), "dives": args.dives,
              "frames_per_dive": args.frames, "size": args.size, "workers": runs}
    if "1" in runs and "2" in runs:
        result["ratio_2_over_1"] = round(runs["2"]["frames_per_s"] / runs["1"]["frames_per_s"], 3)
    emit(result)


if __name__ == "__main__":
    main()
