"""`uwstego play --restamp` over real DDS: stamps follow the playback clock at any --rate, so
the delay between a frame's stamp and its arrival stays what it is at rate 1 (it drifted by the
bag's length times 1 - rate with one constant offset)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import Image

from test_play_e2e import RAW, spin_while_playing, stamp_ns, start_play, write_dive

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FRAMES = 12  # 1.1 s of bag: 2.2 s played at rate 0.5


def stamp_delays_s(probe, bag, rate: float) -> list[float]:
    """Per frame received: arrival time minus header stamp, in seconds."""
    arrivals: list[tuple[int, int]] = []
    probe.node.create_subscription(
        Image, RAW, lambda msg: arrivals.append((time.time_ns(), stamp_ns(msg))), 10)
    proc = start_play(bag, "--topics", RAW, "--rate", str(rate), "--restamp",
                      "--wait-for-subscribers", "20")
    spin_while_playing(probe, proc)
    assert len(arrivals) == FRAMES
    return [(arrived - stamp) / 1e9 for arrived, stamp in arrivals]


def test_restamped_stamps_follow_the_playback_clock_at_half_speed(tmp_path, probe):
    bag = write_dive(tmp_path / "dive", FRAMES)
    at_1 = stamp_delays_s(probe, bag, 1.0)
    at_half = stamp_delays_s(probe, bag, 0.5)
    # No drift: the last frame's delay is the first frame's (a constant offset drifted 0.55 s).
    assert abs(at_half[-1] - at_half[0]) < 0.15, at_half
    # And the delay at half speed is the delay at full speed, within the spinning's jitter.
    assert abs(float(np.median(at_half)) - float(np.median(at_1))) < 0.15, (at_1, at_half)
    assert 0.0 <= float(np.median(at_half)) < 0.25, at_half
