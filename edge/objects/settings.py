"""What counts as an object and how tracks are kept: one frozen settings dataclass.

Object classes are named by class name (the bundle's names, or the ground truth's), never by
index: cluster indices change with every training run, names are what a user gave them. The
default is no object class at all (docs/objects.md "Which classes"): the names of an unnamed
bundle (``cluster_3``) say nothing about what is an object, and a background class turned into
objects (water, sand) would flood a planner with one huge region per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uwstego.coverage import SEPARATOR


@dataclass(frozen=True)
class ObjectSettings:
    classes: tuple[str, ...] = ()  # object class names; () = objects off
    min_area: int = 64  # pixels; smaller regions are noise at the network's patch size
    max_missed: int = 2  # frames a track may go unseen and still keep its id
    match_iou: float = 0.1  # bounding-box IoU (with the track's motion) that continues a track
    match_distance: float = 0.05  # ... or a centroid this close, as a fraction of the diagonal

    def __post_init__(self) -> None:
        if not isinstance(self.classes, tuple) or not all(
                isinstance(c, str) and c for c in self.classes):
            raise ValueError(f"object classes must be a tuple of class names, got "
                             f"{self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"object classes named twice: {', '.join(self.classes)}")
        if not 1 <= self.min_area <= 2**31 - 1:
            raise ValueError(f"object min_area must be at least 1 pixel, got {self.min_area}")
        if not 0 <= self.max_missed <= 1000:
            raise ValueError(f"object max_missed must be in 0..1000 frames, got "
                             f"{self.max_missed}")
        if not 0.0 < self.match_iou <= 1.0:
            raise ValueError(f"object match_iou must be in (0, 1], got {self.match_iou}")
        if not 0.0 <= self.match_distance <= 1.0:
            raise ValueError(f"object match_distance must be in [0, 1] (of the image "
                             f"diagonal), got {self.match_distance}")

    @property
    def enabled(self) -> bool:
        return bool(self.classes)


def parse_class_list(text: str) -> tuple[str, ...]:
    """``"debris, fish"`` -> ``("debris", "fish")``; empty parts are dropped."""
    return tuple(part.strip() for part in text.split(SEPARATOR) if part.strip())


def object_class_ids(wanted: Sequence[str], names: Sequence[str],
                     what: str = "the bundle") -> tuple[int, ...]:
    """The indices of ``wanted`` among ``names``; ValueError naming every unknown one."""
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"object class(es) {', '.join(unknown)} not among the classes of "
                         f"{what} ({', '.join(names)}); name the clusters first (uwstego "
                         "clusters --apply) or use these names")
    return tuple(list(names).index(w) for w in wanted)
