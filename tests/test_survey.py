"""Survey: navigation in synthetic dives, the per-frame table, and campaigns on a Dask cluster."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.bundles import make_tiny_bundle
from tests.support.commands import REPO, assert_one_line_error, run_tool
from uwstego.bags import open_bag
from uwstego.contract import LABELS_GT_TOPIC, NAV_FIX_TOPIC, NAV_ODOM_TOPIC
from uwstego.replay.loop import ReplaySettings, replay
from uwstego.survey.dive import survey_dive
from uwstego.survey.geo import to_local
from uwstego.survey.navigation import FIX_TYPE, ODOMETRY_TYPE, choose_nav_topic, read_navigation
from uwstego.survey.table import read_csv
from uwstego.survey.truth import truth_cover

synth = pytest.importorskip("uwstego.training.synth.writer", reason="synthetic dives: train extra")
from uwstego.training.synth.navigation import nav_samples  # noqa: E402
from uwstego.training.synth.sequence import Dive  # noqa: E402
from uwstego.training.synth.settings import DiveSettings  # noqa: E402

ORIGIN = (43.1, 5.9)
CAMERA = (96, 64)


def _dive(root: Path, seed: int, frames: int = 12, origin: tuple[float, float] | None = ORIGIN,
          folders: bool = False) -> tuple[DiveSettings, Path]:
    settings = DiveSettings(seed=seed, frames=frames, width=CAMERA[0], height=CAMERA[1],
                            segment_frames=6, nav_origin=origin)
    synth.write_dive(settings, root / f"dive{seed}", folders=folders, bag=True)
    return settings, root / f"dive{seed}" / "bag"


def test_positions_join_within_a_centimetre_of_the_truth(tmp_path: Path) -> None:
    settings, bag_path = _dive(tmp_path, seed=4, frames=30)
    bag = open_bag(bag_path)
    assert bag.topics[NAV_ODOM_TOPIC] == ODOMETRY_TYPE and bag.topics[NAV_FIX_TOPIC] == FIX_TYPE
    dive = Dive(settings)
    stamps = np.array([dive.t_ns(i) for i in range(settings.frames)])
    truth = [dive.path.pose(dive.time_s(i)) for i in range(settings.frames)]
    depth = [dive.frame(i).params["camera_depth_m"] for i in range(settings.frames)]
    nav_times = np.array([s.t_ns for s in nav_samples(dive)])
    for topic in (NAV_FIX_TOPIC, NAV_ODOM_TOPIC):
        track = read_navigation(bag, topic)
        positions = track.at(stamps)
        assert positions.valid.all()
        east, north = positions.east, positions.north
        if topic == NAV_FIX_TOPIC:  # back into the dive's own frame through latitude/longitude
            east, north = to_local(*positions.latlon(), ORIGIN)
        error = np.hypot(east - [p.x for p in truth], north - [p.y for p in truth])
        assert error.max() < 0.01, (topic, error.max())
        # The synthetic seabed is redrawn at segment cuts, a depth step no vehicle makes: frames
        # whose two navigation samples straddle a cut are interpolated across the step.
        right = np.searchsorted(nav_times, stamps)
        segment = lambda t: int((t - settings.start_ns) / 1e9 * settings.fps  # noqa: E731
                                ) // settings.segment_frames
        same = np.array([segment(nav_times[r - 1]) == segment(nav_times[r]) for r in right])
        assert same.sum() >= settings.frames - 2 * (settings.frames // settings.segment_frames)
        depth_error = np.abs(positions.depth - depth)[same]
        assert depth_error.max() < 0.01, depth_error.max()


def test_navigation_topic_rule() -> None:
    odom, fix = ODOMETRY_TYPE, FIX_TYPE
    assert choose_nav_topic({"/a": odom, "/f": fix}) == "/f"
    assert choose_nav_topic({"/a": odom}) == "/a"
    assert choose_nav_topic({"/cam": "sensor_msgs/msg/Image"}) is None
    with pytest.raises(ValueError, match=r"2 nav_msgs/msg/Odometry topics \(/a, /b\).*--nav-topic"):
        choose_nav_topic({"/a": odom, "/b": odom})
    assert choose_nav_topic({"/a": odom, "/b": odom}, "/b") == "/b"
    with pytest.raises(ValueError, match="/cam is a sensor_msgs/msg/Image"):
        choose_nav_topic({"/cam": "sensor_msgs/msg/Image"}, "/cam")
    with pytest.raises(ValueError, match="/x is not in the bag"):
        choose_nav_topic({"/a": odom}, "/x")


def test_truth_cover_equals_an_independent_count_from_the_label_images(tmp_path: Path) -> None:
    settings, bag_path = _dive(tmp_path, seed=6, frames=8, folders=True)
    dive = Dive(settings)
    stamps = [dive.t_ns(i) for i in range(settings.frames)]
    cover = truth_cover(open_bag(bag_path), LABELS_GT_TOPIC, stamps, 9)
    for i in range(settings.frames):
        labels = cv2.imread(str(bag_path.parent / "labels" / f"{i:06d}.png"),
                            cv2.IMREAD_UNCHANGED)
        kept = labels[labels != 255]
        expected = np.array([(kept == k).sum() for k in range(9)]) / kept.size
        np.testing.assert_allclose(cover[i], expected, atol=1e-12)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "bundle", camera=CAMERA)


def _replayed(bag: Path, bundle: Path, out: Path, gt_topic: str | None = LABELS_GT_TOPIC):
    settings = ReplaySettings(gt_topic=gt_topic, progress=False, threads=1)
    return replay(bag, bundle, settings, report_dir=out / "report").summary


def test_survey_files_csv_and_geojson(tmp_path: Path, bundle: Path) -> None:
    settings, bag = _dive(tmp_path, seed=7, frames=10)
    summary = _replayed(bag, bundle, tmp_path)
    result = survey_dive(summary, bag, tmp_path / "survey")
    assert result.frames == 10 and result.frames_without_position == 0 and result.geographic
    assert {"survey.csv", "survey.geojson", "survey_truth.csv", "survey_map.png",
            "survey_cover.png"} <= set(result.files)
    # GeoJSON (RFC 7946): a FeatureCollection of Point features, longitude first.
    doc = json.loads((tmp_path / "survey" / "survey.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 10
    dive = Dive(settings)
    for i, feature in enumerate(doc["features"]):
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        lon, lat, alt = feature["geometry"]["coordinates"]
        assert all(isinstance(v, float) and math.isfinite(v) for v in (lon, lat, alt))
        east, north = to_local(np.array([lat]), np.array([lon]), ORIGIN)
        pose = dive.path.pose(dive.time_s(i))
        assert math.hypot(east[0] - pose.x, north[0] - pose.y) < 0.01
        props = feature["properties"]
        assert props["index"] == i and props["dominant"] in summary.primary.bundle.classes
        cover = [props[f"cover_{c}_pct"] for c in summary.primary.bundle.classes]
        assert sum(cover) == pytest.approx(100, abs=0.05)
    table = read_csv(tmp_path / "survey" / "survey.csv")
    assert table.classes == tuple(summary.primary.bundle.classes) and table.positions.valid.all()
    np.testing.assert_array_equal(table.stamp_ns, summary.frames_stamp_ns)
    truth = read_csv(tmp_path / "survey" / "survey_truth.csv")
    assert np.allclose(np.nansum(truth.cover, axis=1), 100, atol=0.05)
    # The cover error compares each ground-truth class with the cluster matched to it.
    error = result.cover_error
    assert error is not None and error.frames == 10
    assert set(error.dive) == set(truth.classes)
    assert result.notes == ()


def test_survey_without_navigation_counts_every_frame(tmp_path: Path, bundle: Path) -> None:
    # A bag of another tool: copy the camera topic only (no navigation).
    from uwstego.bags import BagWriter

    _, bag = _dive(tmp_path, seed=8, frames=6)
    plain = tmp_path / "plain"
    with BagWriter(plain) as writer:
        for raw in open_bag(bag).messages(("/camera/image_raw",)):
            writer.write_raw(raw.topic, raw.t_ns, raw.msgtype, raw.data)
    summary = _replayed(plain, bundle, tmp_path, gt_topic=None)
    result = survey_dive(summary, plain, tmp_path / "survey", figures=False)
    assert result.nav_topic is None and result.frames_without_position == 6
    assert "no navigation topic" in result.notes[0]


def test_replay_report_holds_the_survey(tmp_path: Path, bundle: Path) -> None:
    _, bag = _dive(tmp_path, seed=9, frames=6)
    report = tmp_path / "report"
    done = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--report", report,
                    "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (report / "survey" / "survey.geojson").is_file()
    page = (report / "index.html").read_text()
    assert "<h2>Survey</h2>" in page and "survey/survey_map.png" in page
    refused = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--nav-topic", "/nav/odom")
    assert_one_line_error(refused, "--nav-topic", "--report")
    report2 = tmp_path / "report2"
    wrong = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--report", report2,
                     "--nav-topic", "/camera/image_raw")
    assert_one_line_error(wrong, "/camera/image_raw is a sensor_msgs/msg/Image")
    assert not report2.exists()


def _campaign(bags: list[Path], bundle: Path, out: Path, *extra: str, workers: int = 2):
    return run_tool("uwstego", "survey", *map(str, bags), "--bundle", bundle, "--out", out,
                    "--workers", str(workers), "--gt-topic", LABELS_GT_TOPIC, "--threads", "1",
                    *extra, timeout=600)


def test_campaign_on_a_two_worker_cluster_equals_single_replays(tmp_path: Path,
                                                                 bundle: Path) -> None:
    pytest.importorskip("distributed", reason="the survey extra (Dask) is not installed")
    bags = [_dive(tmp_path, seed)[1] for seed in (11, 12, 13)]
    out = tmp_path / "campaign"
    done = _campaign(bags, bundle, out)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "campaign.json").read_text())
    assert [d["status"] for d in doc["dives"]] == ["done"] * 3
    for bag in bags:
        name = bag.parent.name
        single = tmp_path / "single" / name
        survey_dive(_replayed(bag, bundle, single), bag, single / "survey", figures=False)
        assert ((out / "dives" / name / "report" / "survey" / "survey.csv").read_text()
                == (single / "survey" / "survey.csv").read_text())
    rows = (out / "campaign.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("dive,bag,status,duration_s,distance_m")
    assert (out / "campaign_map.png").stat().st_size > 0
    assert "dives/dive11/report/index.html" in (out / "index.html").read_text()
    # The cluster listened on loopback only (the network rule): every address Dask logged.
    assert "tcp://" not in done.stderr.replace("tcp://127.0.0.1", "")
    # Rerunning resumes: nothing is redone.
    before = {p: p.stat().st_mtime_ns for p in (out / "dives").rglob("*") if p.is_file()}
    again = _campaign(bags, bundle, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 of 3 dives were finished by an earlier run" in again.stderr
    assert before == {p: p.stat().st_mtime_ns for p in (out / "dives").rglob("*") if p.is_file()}


def test_killed_campaign_resumes_and_a_failed_dive_does_not_stop_the_others(
        tmp_path: Path, bundle: Path) -> None:
    pytest.importorskip("distributed", reason="the survey extra (Dask) is not installed")
    bags = [_dive(tmp_path, seed, frames=16)[1] for seed in (21, 22)]
    out = tmp_path / "campaign"
    code = ("import sys; from uwstego.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "survey", *map(str, bags), "--bundle", str(bundle), "--out",
         str(out), "--workers", "1", "--threads", "1"], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "dives").glob("*/done.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [p.parent.name for p in (out / "dives").glob("*/done.json")]
    assert len(finished) == 1, finished
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not a bag\n")
    resumed = _campaign([*bags, broken], bundle, out, workers=1)
    assert resumed.returncode == 1
    line = assert_one_line_error(resumed, "1 of 3 dives failed", "broken")
    assert "Traceback" not in line
    doc = json.loads((out / "campaign.json").read_text())
    status = {d["name"]: d["status"] for d in doc["dives"]}
    assert status[finished[0]] == "resumed" and status["broken"] == "failed"
    assert sorted(status.values()) == ["done", "failed", "resumed"]
    assert not list((out / "dives").glob(".*")), "a killed run's staging folder was left"
