"""What a replay records about objects: per model (and for the ground truth), every detection
of every frame and every track, with a thumbnail of each track at its largest.

Runs on the writer thread, after the frame's figures (docs/objects.md "Replay"). A thumbnail is
cut from the frame at the moment a track reaches its largest area and kept small, so a run of
any length holds only one small picture per track.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from uwstego.bags import BagImage
from uwstego.objects import Detection, ObjectSettings, Tracker, find_regions

THUMB_SIZE = 64  # the longer side of a track's thumbnail, in pixels
THUMB_MARGIN = 0.25  # of the box's size, added around it so the object is seen in its context


@dataclass
class TrackRecord:
    """One track over the run (positions count processed frames; ``index`` the bag's)."""

    id: int
    class_name: str
    first_position: int
    first_index: int
    first_t_ns: int
    first_stamp_ns: int
    last_index: int = 0
    last_t_ns: int = 0
    frames_seen: int = 0
    largest_area: int = 0
    largest_index: int = 0
    largest_bbox: tuple[int, int, int, int] = (0, 0, 0, 0)
    thumbnail: np.ndarray | None = None  # RGB, at most THUMB_SIZE on its longer side

    def to_dict(self, t0_ns: int) -> dict[str, Any]:
        return {"track_id": self.id, "class": self.class_name, "first_index": self.first_index,
                "first_t_ns": self.first_t_ns, "first_stamp_ns": self.first_stamp_ns,
                "first_t_s": round((self.first_t_ns - t0_ns) / 1e9, 3),
                "last_index": self.last_index, "last_t_ns": self.last_t_ns,
                "last_t_s": round((self.last_t_ns - t0_ns) / 1e9, 3),
                "frames_seen": self.frames_seen, "largest_area": self.largest_area,
                "largest_index": self.largest_index, "largest_bbox": list(self.largest_bbox)}


def thumbnail(rgb: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = bbox
    mx, my = int(w * THUMB_MARGIN) + 1, int(h * THUMB_MARGIN) + 1
    crop = rgb[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx]
    scale = THUMB_SIZE / max(crop.shape[:2])
    if scale >= 1:
        return crop.copy()
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


class ObjectRecorder:
    """Objects of one label stream (a model's, or the ground truth's) over a replay."""

    def __init__(self, source: str, class_names: Sequence[str], class_ids: Sequence[int],
                 settings: ObjectSettings) -> None:
        """``source``: what the labels are (a model's name, or "ground truth")."""
        self.source = source
        self.class_names = list(class_names)
        self.class_ids = tuple(class_ids)
        self.settings = settings
        self.tracker = Tracker(settings)
        self.tracks: dict[int, TrackRecord] = {}
        self.frames: list[dict[str, Any]] = []  # per processed frame: its detections

    def add(self, position: int, frame: BagImage, labels: np.ndarray,
            confidence: np.ndarray | None = None,
            novelty: np.ndarray | None = None) -> list[Detection]:
        regions = find_regions(labels, self.class_ids, self.settings.min_area, confidence,
                               novelty)
        found = self.tracker.update(regions, labels.shape, position, frame.t_ns)
        rows = []
        for det in found:
            region = det.region
            name = self.class_names[region.class_id]
            record = self.tracks.get(det.track_id)
            if record is None:
                record = self.tracks[det.track_id] = TrackRecord(
                    det.track_id, name, position, frame.index, frame.t_ns, frame.stamp_ns)
            record.last_index, record.last_t_ns = frame.index, frame.t_ns
            record.frames_seen = det.frames_seen
            if region.area > record.largest_area:
                record.largest_area, record.largest_index = region.area, frame.index
                record.largest_bbox = region.bbox
                record.thumbnail = thumbnail(frame.rgb, region.bbox)
            rows.append({"track_id": det.track_id, "class": name, **region.to_dict()})
        self.frames.append({"index": frame.index, "t_ns": frame.t_ns,
                            "stamp_ns": frame.stamp_ns, "detections": rows})
        return found
