"""`uwstego play` over real DDS: a recorded dive drives the running node, whose output must match
the offline replay of the same bag; and play's timing, /clock and restamping options."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from tests.support.bundles import make_tiny_bundle
from tests.support.media import scene
from uwstego.bags import BagWriter, iter_bag_images
from uwstego.enhance import EnhanceSettings
from uwstego.replay.loop import ReplaySettings, replay

from ros_harness import NODE_NAME, REPO, Probe
from test_ros_node import latest_status

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SIZE = (96, 64)
RAW, INFO, GT = "/camera/image_raw", "/camera/camera_info", "/camera/labels_gt"
T0, DT = 1_700_000_000_000_000_000, 100_000_000
START_TIMEOUT = 30.0
BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def dive_frames(n: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """A synthetic dive with ground truth, or plain test scenes while the generator is absent."""
    try:
        from uwstego.training.synth.sequence import generate_dive
        from uwstego.training.synth.settings import DiveSettings
    except ImportError:
        return [(scene(i, h=SIZE[1], w=SIZE[0]), None) for i in range(n)]
    settings = DiveSettings(frames=n, width=SIZE[0], height=SIZE[1], seed=5)
    return [(f.rgb, f.labels) for f in generate_dive(settings)]


def write_dive(path: Path, n: int) -> Path:
    w, h = SIZE
    with BagWriter(path) as bag:
        for i, (rgb, labels) in enumerate(dive_frames(n)):
            t = T0 + i * DT
            bag.write_camera_info(INFO, t, w, h, [[80, 0, w / 2], [0, 80, h / 2], [0, 0, 1]],
                                  stamp_ns=t, frame_id="cam")
            bag.write_image(RAW, t, rgb, "rgb8", stamp_ns=t, frame_id="cam")
            if labels is not None:
                bag.write_image(GT, t, labels, "mono8", stamp_ns=t, frame_id="cam")
    return path


def start_play(bag: Path, *options: str) -> subprocess.Popen:
    """`uwstego play` in its own process, as a user runs it."""
    script = textwrap.dedent(f"""
        import argparse, logging, sys
        from uwstego.replay.play_cli import register
        logging.basicConfig(level=logging.INFO)
        parser = argparse.ArgumentParser(prog="uwstego")
        register(parser.add_subparsers())
        args = parser.parse_args({["play", str(bag), *options]!r})
        sys.exit(args.func(args))
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def spin_while_playing(probe: Probe, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "uwstego play did not finish"
        probe.spin_for(0.05)
    probe.spin_for(0.5)  # the last results
    output = proc.stdout.read().decode(errors="replace")
    assert proc.returncode == 0, output
    return output


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_played_dive_through_the_node_matches_the_offline_replay(tmp_path, start_node, probe):
    # No temporal smoothing: a frame's labels then do not depend on which frames came before,
    # so the node may drop frames and still agree with the offline replay frame for frame.
    bundle = make_tiny_bundle(tmp_path / "bundle", camera=SIZE,
                              enhancement=EnhanceSettings(temporal_alpha=1.0))
    n = 12
    bag = write_dive(tmp_path / "dive", n)
    offline = tmp_path / "offline"
    replay(bag, bundle, ReplaySettings(backend="onnxruntime", progress=False), out_bag=offline)
    expected = {f.stamp_ns: f.rgb[..., 0]
                for f in iter_bag_images(offline, f"/{NODE_NAME}/labels")}
    assert len(expected) == n

    node = start_node(bundle, transport="raw", qos="reliable", backend="onnxruntime")
    labels = probe.collect(Image, f"/{NODE_NAME}/labels")
    diags = probe.collect(DiagnosticArray, "/diagnostics")
    probe.spin_until(lambda: (latest_status(diags, NODE_NAME) or {}).get("state") == "running"
                     and probe.node.count_publishers(f"/{NODE_NAME}/labels") > 0,
                     START_TIMEOUT, "the node to run")

    proc = start_play(bag, "--topics", RAW, INFO, "--remap", f"{RAW}:=/image",
                      f"{INFO}:=/camera_info", "--wait-for-subscribers", "20")
    spin_while_playing(probe, proc)
    assert node.alive(), node.output()

    # Record what the node published, and compare the recording with the offline bag.
    recorded = tmp_path / "recorded"
    with BagWriter(recorded) as out:
        for msg in labels:
            pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
            out.write_image(f"/{NODE_NAME}/labels", stamp_ns(msg),
                            np.ascontiguousarray(pixels[:, :msg.width]), "mono8",
                            stamp_ns=stamp_ns(msg), frame_id=msg.header.frame_id)
    live = list(iter_bag_images(recorded, f"/{NODE_NAME}/labels"))
    assert len(live) >= n // 2, f"the node published {len(live)} of {n} frames"
    for frame in live:
        assert frame.stamp_ns in expected, "the node published a stamp the bag does not have"
        assert frame.frame_id == "cam"
        np.testing.assert_array_equal(frame.rgb[..., 0], expected[frame.stamp_ns])


def test_play_window_clock_and_restamp(tmp_path, probe):
    n = 10
    bag = write_dive(tmp_path / "dive", n)
    images = probe.collect(Image, RAW)
    clocks = probe.collect(Clock, "/clock", BEST_EFFORT)
    before = time.time_ns()
    # Frames at 0.3, 0.4, 0.5 and 0.6 s of the bag: --start 0.25 --duration 0.4, at double speed.
    proc = start_play(bag, "--topics", RAW, "--start", "0.25", "--duration", "0.4", "--rate",
                      "2", "--clock", "50", "--restamp", "--wait-for-subscribers", "20")
    spin_while_playing(probe, proc)
    after = time.time_ns()

    assert len(images) == 4
    stamps = [stamp_ns(m) for m in images]
    # Restamped by the playback clock: spacing as played (half the recorded one at double
    # speed), values around "now" instead of 2023.
    assert np.diff(stamps).tolist() == [DT // 2] * 3
    assert before - DT <= stamps[0] <= after
    assert clocks, "no /clock while playing"
    bag_times = [c.clock.sec * 1_000_000_000 + c.clock.nanosec for c in clocks]
    assert all(T0 + 2 * DT <= t <= T0 + 7 * DT for t in bag_times)
    assert bag_times == sorted(bag_times)
