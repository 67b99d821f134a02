"""Validate a bundle on recorded dives: offline replay with a report, and live playback.

- :func:`replay` (``uwstego replay``): the node's Segmenter over a bag's camera topic, writing an
  output bag, an HTML report (plots, an overlay video that plays in a browser, frames to look
  at) and scores against ground truth; survives damaged bags.
- :mod:`uwstego.replay.play` (``uwstego play``): publish a bag onto ROS 2 with its recorded timing.
"""

from __future__ import annotations

from uwstego.replay.loop import ReplayResult, ReplaySettings, replay

__all__ = ["ReplayResult", "ReplaySettings", "replay"]
