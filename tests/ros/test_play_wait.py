"""`uwstego play --wait-for-subscribers` waits for the camera only (never for the ground truth,
which nothing subscribes to), and plays a synth dive folder (its ``bag/``)."""

from __future__ import annotations

import time

import pytest
from sensor_msgs.msg import Image

from test_play_e2e import GT, RAW, spin_while_playing, start_play, write_dive

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WAIT_S = 20.0


def test_waits_for_the_camera_only_and_takes_a_dive_folder(tmp_path, probe):
    n = 5
    dive = tmp_path / "dive"
    write_dive(dive / "bag", n)  # camera, camera_info and /camera/labels_gt
    (dive / "dive.json").write_text("{}")
    images = probe.collect(Image, RAW)  # nothing subscribes to the ground truth
    started = time.monotonic()
    proc = start_play(dive, "--wait-for-subscribers", str(WAIT_S))
    output = spin_while_playing(probe, proc)
    elapsed = time.monotonic() - started
    assert len(images) == n
    assert elapsed < WAIT_S / 2, f"play waited {elapsed:.1f} s: it waited for {GT} too"
    assert "no subscriber" not in output
