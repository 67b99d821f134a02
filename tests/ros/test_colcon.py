"""The package built as ROS users build it: ``colcon build`` into a temporary workspace, then the
installed ``segmentation_node`` executable segments a short ``uwstego play`` over real DDS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from tests.support.bundles import make_tiny_bundle
from uwstego.bags import iter_bag_images
from uwstego.contract import NODE_NAME
from uwstego.enhance import EnhanceSettings
from uwstego.replay.loop import ReplaySettings, replay

from ros_harness import PACKAGE_DIR, NodeProcess
from test_play_e2e import INFO, RAW, SIZE, spin_while_playing, stamp_ns, start_play, write_dive
from test_ros_node import latest_status

pytestmark = [pytest.mark.ros, pytest.mark.slow]

COLCON = Path(sys.executable).with_name("colcon")
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not COLCON.exists():
        pytest.skip("colcon is not installed in this interpreter's environment (dev extra)")
    ws = tmp_path_factory.mktemp("colcon_ws")
    # A copy: the build must not leave egg-info or build folders in the repository.
    shutil.copytree(PACKAGE_DIR, ws / "src" / PACKAGE_DIR.name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [str(COLCON), "--log-base", "log", "build", "--base-paths", "src", "--build-base",
         "build", "--install-base", "install"],
        cwd=ws, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return ws / "install"


def test_colcon_installs_the_ament_layout(workspace: Path) -> None:
    pkg = workspace / "uwstego_ros"
    for rel in ("lib/uwstego_ros/segmentation_node",
                "share/ament_index/resource_index/packages/uwstego_ros",
                "share/uwstego_ros/package.xml",
                "share/uwstego_ros/launch/segmentation.launch.py",
                "share/uwstego_ros/config/segmentation.yaml",
                "share/uwstego_ros/config/fastdds_large_data.xml",
                f"lib/{PYTHON}/site-packages/uwstego_ros/node.py"):
        assert (pkg / rel).is_file(), rel


def test_installed_node_segments_a_played_dive(workspace, tmp_path, probe):
    pkg = workspace / "uwstego_ros"
    site = pkg / "lib" / PYTHON / "site-packages"
    env = {"AMENT_PREFIX_PATH": str(pkg)}  # what `source install/setup.bash` sets, and:
    which = subprocess.run(
        [sys.executable, "-c", "import uwstego_ros; print(uwstego_ros.__file__)"],
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(site), *sys.path[:1]])},
        capture_output=True, text=True, check=True)
    assert Path(which.stdout.strip()).is_relative_to(site), "the installed package must be used"

    bundle = make_tiny_bundle(tmp_path / "bundle", camera=SIZE,
                              enhancement=EnhanceSettings(temporal_alpha=1.0))
    n = 8
    bag = write_dive(tmp_path / "dive", n)
    replay(bag, bundle, ReplaySettings(backend="onnxruntime", progress=False),
           out_bag=tmp_path / "offline")
    expected = {f.stamp_ns: f.rgb[..., 0]
                for f in iter_bag_images(tmp_path / "offline", f"/{NODE_NAME}/labels")}

    script = pkg / "lib" / "uwstego_ros" / "segmentation_node"
    node = NodeProcess({"bundle": bundle, "transport": "raw", "qos": "reliable",
                        "backend": "onnxruntime", "diagnostics_period": 0.2},
                       tmp_path / "node.log", command=[sys.executable, str(script)],
                       python_path=site, env=env)
    try:
        labels = probe.collect(Image, f"/{NODE_NAME}/labels")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        probe.spin_until(lambda: (latest_status(diags, NODE_NAME) or {}).get("state")
                         == "running", 60, "the installed node to run")
        proc = start_play(bag, "--topics", RAW, INFO, "--remap", f"{RAW}:=/image",
                          f"{INFO}:=/camera_info", "--wait-for-subscribers", "20")
        spin_while_playing(probe, proc)
        assert node.alive(), node.output()
    finally:
        node.stop()
    assert len(labels) >= n // 2, f"the installed node published {len(labels)} of {n} frames"
    for msg in labels:
        pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        np.testing.assert_array_equal(pixels[:, :msg.width], expected[stamp_ns(msg)])
