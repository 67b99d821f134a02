"""The synthetic dives' classes and their colours, defined here and nowhere else.

The label maps hold these indices (uint8); 255 marks pixels to ignore. The entries are
``uwstego.classes.ClassInfo`` so they drop straight into a deploy bundle or a names YAML.
"""

from __future__ import annotations

import numpy as np

from uwstego.classes import ClassInfo
from uwstego.contract import IGNORE_LABEL
from uwstego.visualize import colorize
from uwstego.visualize import palette as edge_palette

WATER, SAND, ROCK, REEF, VEGETATION, FISH, DEBRIS, DIVER, CABLE = range(9)
IGNORE = IGNORE_LABEL

CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo("water", (20, 70, 140)),
    ClassInfo("sand", (225, 205, 150)),       # sand and sediment
    ClassInfo("rock", (120, 112, 105)),
    ClassInfo("reef", (235, 90, 150)),        # coral reef
    ClassInfo("vegetation", (60, 170, 60)),   # seagrass, kelp, algae
    ClassInfo("fish", (250, 160, 20)),
    ClassInfo("debris", (230, 30, 30)),       # plastic bags, bottles, cans, nets
    ClassInfo("diver", (150, 60, 230)),
    ClassInfo("cable", (250, 245, 60)),       # cable or pipeline
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
IGNORE_COLOR = (255, 255, 255)


def palette() -> np.ndarray:
    """A 256x3 uint8 lookup table: class colours, white for ignore, black for unused indices."""
    table = edge_palette(CLASSES)
    table[IGNORE] = IGNORE_COLOR
    return table


def colourise(labels: np.ndarray) -> np.ndarray:
    """HxW class indices -> HxWx3 RGB in the palette's colours."""
    return colorize(labels, palette())
