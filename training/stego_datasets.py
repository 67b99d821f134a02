"""What ``uwstego import-stego`` offers, without torch: probes, dataset class names, resolution.

Kept apart from :mod:`uwstego.training.stego_import` so that registering the sub-command (which
needs
these for its choices) imports no torch.
"""

from __future__ import annotations

PROBES = ("cluster", "linear")
# STEGO evaluates at 320 px (training crops are 224); the exported network size follows it.
DEFAULT_RESOLUTION = 320

_THINGS = ("electronic", "appliance", "food (thing)", "furniture (thing)", "indoor", "kitchen",
           "accessory", "animal", "outdoor", "person", "sports", "vehicle")
_STUFF = ("ceiling", "floor", "food (stuff)", "furniture (stuff)", "raw material", "textile",
          "wall", "window", "building", "ground", "plant", "sky", "solid", "structural",
          "water")
# Class names of the linear probes of the released checkpoints, by dataset.
DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "cocostuff27": _THINGS + _STUFF,
    "cityscapes": ("road", "sidewalk", "parking", "rail track", "building", "wall", "fence",
                   "guard rail", "bridge", "tunnel", "pole", "polegroup", "traffic light",
                   "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                   "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle"),
    "potsdam": ("roads and cars", "buildings and clutter", "trees and vegetation"),
}
