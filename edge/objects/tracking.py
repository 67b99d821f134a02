"""Tracks: stable ids for the regions of consecutive frames (docs/objects.md "Tracks").

Per class, every live track is compared with every region of the new frame: its last box,
moved on by its recent motion for each frame it went unseen, must overlap the region's box by
``match_iou`` or its centroid must lie within ``match_distance`` of the diagonal. The best pairs
(highest overlap, then nearest) are taken greedily, one region per track. A track not seen
for more than ``max_missed`` frames ends; a region left over starts a new track. Ids are never
reused within a tracker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from uwstego.objects.regions import Region
from uwstego.objects.settings import ObjectSettings

# Weight of the newest displacement in a track's motion (per frame); the rest is its history.
MOTION_SMOOTHING = 0.5


@dataclass
class Track:
    """One object followed over frames; changed in place while it lives."""

    id: int
    class_id: int
    first_frame: int
    first_t_ns: int
    region: Region  # where it was last seen
    last_frame: int = 0
    last_t_ns: int = 0
    frames_seen: int = 1
    missed: int = 0  # frames since it was last seen
    largest: Region | None = None
    largest_frame: int = 0
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame

    def __post_init__(self) -> None:
        self.last_frame, self.last_t_ns = self.first_frame, self.first_t_ns
        self.largest, self.largest_frame = self.region, self.first_frame

    def predicted_box(self) -> tuple[float, float, float, float]:
        steps = self.missed + 1
        x, y, w, h = self.region.bbox
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)

    def predicted_centroid(self) -> tuple[float, float]:
        steps = self.missed + 1
        cx, cy = self.region.centroid
        return cx + self.velocity[0] * steps, cy + self.velocity[1] * steps

    def see(self, region: Region, frame: int, t_ns: int) -> None:
        steps = max(1, frame - self.last_frame)
        dx = (region.centroid[0] - self.region.centroid[0]) / steps
        dy = (region.centroid[1] - self.region.centroid[1]) / steps
        a = MOTION_SMOOTHING if self.frames_seen > 1 else 1.0
        self.velocity = (a * dx + (1 - a) * self.velocity[0], a * dy + (1 - a) * self.velocity[1])
        self.region, self.last_frame, self.last_t_ns = region, frame, t_ns
        self.frames_seen += 1
        self.missed = 0
        if self.largest is None or region.area > self.largest.area:
            self.largest, self.largest_frame = region, frame


@dataclass(frozen=True)
class Detection:
    """A region of one frame and the track it belongs to."""

    track_id: int
    region: Region
    frames_seen: int  # by this track, this frame included
    first_t_ns: int  # when this track was first seen


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4, x y w h) with every box in ``b`` (M x 4)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]),
                 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class Tracker:
    settings: ObjectSettings
    tracks: list[Track] = field(default_factory=list)  # the live ones
    issued: int = 0  # track ids handed out so far

    def update(self, regions: Sequence[Region], shape: tuple[int, int], frame: int,
               t_ns: int) -> list[Detection]:
        """Assign this frame's ``regions`` (of a ``shape`` = (height, width) image) to tracks;
        ``frame`` counts processed frames (dropouts are counted in them)."""
        s = self.settings
        reach = s.match_distance * math.hypot(*shape)
        assigned: dict[int, Track] = {}  # region position -> track
        for class_id in sorted({r.class_id for r in regions} | {t.class_id for t in self.tracks}):
            where = [i for i, r in enumerate(regions) if r.class_id == class_id]
            tracks = [t for t in self.tracks if t.class_id == class_id]
            if not where or not tracks:
                continue
            boxes = np.array([regions[i].bbox for i in where], dtype=np.float64)
            iou = box_iou(np.array([t.predicted_box() for t in tracks]), boxes)
            centres = np.array([regions[i].centroid for i in where])
            predicted = np.array([t.predicted_centroid() for t in tracks])
            dist = np.hypot(*(predicted[:, None, :] - centres[None]).transpose(2, 0, 1))
            ok = (iou >= s.match_iou) | (dist <= reach)
            pairs = sorted(zip(*np.nonzero(ok), strict=True), key=lambda p: (-iou[p], dist[p]))
            used_tracks: set[int] = set()
            for ti, ri in pairs:
                if ti in used_tracks or where[ri] in assigned:
                    continue
                used_tracks.add(ti)
                assigned[where[ri]] = tracks[ti]
        seen = {id(t) for t in assigned.values()}
        for track in self.tracks:
            if id(track) not in seen:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= s.max_missed]
        detections = []
        for i, region in enumerate(regions):
            track = assigned.get(i)
            if track is None:
                self.issued += 1
                track = Track(self.issued, region.class_id, frame, t_ns, region)
                self.tracks.append(track)
            else:
                track.see(region, frame, t_ns)
            detections.append(Detection(track.id, region, track.frames_seen, track.first_t_ns))
        return detections
