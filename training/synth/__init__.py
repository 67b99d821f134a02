"""Synthetic underwater dives with exact ground truth (numpy and OpenCV only, no torch).

``generate_dive(DiveSettings(...))`` yields ``SynthFrame``s: an RGB frame, its class label map
(classes in ``uwstego.training.synth.classes``), its range map and the parameters that produced it.
``write_dive`` stores a dive as PNG folders and/or a rosbag2; ``uwstego synth`` is its CLI.
"""

from __future__ import annotations

from uwstego.training.synth.classes import CLASS_NAMES, CLASSES, IGNORE, colourise, palette
from uwstego.training.synth.sequence import Dive, SynthFrame, generate_dive
from uwstego.training.synth.settings import JERLOV_TYPES, DiveSettings
from uwstego.training.synth.writer import WriteReport, write_dive

__all__ = [
    "CLASSES", "CLASS_NAMES", "IGNORE", "JERLOV_TYPES", "Dive", "DiveSettings", "SynthFrame",
    "WriteReport", "colourise", "generate_dive", "palette", "write_dive",
]
