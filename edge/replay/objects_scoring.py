"""Detection recall and precision per ground-truth object class (docs/objects.md "Scores").

The true objects are the connected regions of a ground-truth class; the detections are the
regions of the model's cluster matched to that class by the run's usual cluster-to-class
matching (the Hungarian assignment of :mod:`uwstego.scoring`). Since that matching is known only
at the end of the run, every frame counts the matches of each object class against *every*
cluster; the matched cluster's column is read at the end. A true object is found when a
detection's bounding box overlaps its box by at least the IoU threshold (each one used once,
best overlaps first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from uwstego.objects import Region, box_iou, find_regions


def matched_pairs(truth: Sequence[Region], found: Sequence[Region], threshold: float) -> int:
    """How many true regions a detection can be paired with at ``threshold`` box IoU."""
    if not truth or not found:
        return 0
    iou = box_iou(np.array([r.bbox for r in truth], np.float64),
                  np.array([r.bbox for r in found], np.float64))
    rows, cols = np.nonzero(iou >= threshold)
    used_t, used_f, pairs = set(), set(), 0
    for k in np.argsort(-iou[rows, cols], kind="stable"):
        t, f = int(rows[k]), int(cols[k])
        if t not in used_t and f not in used_f:
            used_t.add(t)
            used_f.add(f)
            pairs += 1
    return pairs


class DetectionCounts:
    """Per frame, true objects of ``truth_ids`` against the regions of each of ``clusters``."""

    def __init__(self, truth_ids: Sequence[int], clusters: int, min_area: int,
                 threshold: float) -> None:
        self.truth_ids = tuple(truth_ids)
        self.clusters, self.min_area, self.threshold = clusters, min_area, threshold
        self.truth = np.zeros(len(self.truth_ids), np.int64)  # true objects per class
        self.found = np.zeros(clusters, np.int64)  # detections per cluster
        self.matched = np.zeros((len(self.truth_ids), clusters), np.int64)

    def add(self, labels: np.ndarray, truth_regions: Sequence[Region]) -> None:
        regions = find_regions(labels, range(self.clusters), self.min_area)
        by_cluster: list[list[Region]] = [[] for _ in range(self.clusters)]
        for r in regions:
            by_cluster[r.class_id].append(r)
        self.found += [len(b) for b in by_cluster]
        for row, gt_class in enumerate(self.truth_ids):
            true = [r for r in truth_regions if r.class_id == gt_class]
            self.truth[row] += len(true)
            for cluster, found in enumerate(by_cluster):
                self.matched[row, cluster] += matched_pairs(true, found, self.threshold)

    def scores(self, assignment: Sequence[int], gt_names: Sequence[str],
               cluster_names: Sequence[str]) -> list[dict[str, Any]]:
        """Per ground-truth object class: its matched cluster, counts, recall and precision
        (None where undefined: no true object, no detection or no matched cluster)."""
        out = []
        for row, gt_class in enumerate(self.truth_ids):
            cluster = assignment[gt_class] if gt_class < len(assignment) else -1
            ok = 0 <= cluster < self.clusters
            matched = int(self.matched[row, cluster]) if ok else 0
            found = int(self.found[cluster]) if ok else 0
            true = int(self.truth[row])
            out.append({"class": gt_names[gt_class],
                        "matched_cluster": cluster_names[cluster] if ok else None,
                        "true_objects": true, "detections": found, "matched": matched,
                        "recall": matched / true if true else None,
                        "precision": matched / found if found else None,
                        "iou_threshold": self.threshold})
        return out
