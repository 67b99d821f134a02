"""The node's objects: connected regions of the object classes, tracked, on two topics.

* ``~/objects``: ``vision_msgs/Detection2DArray`` with the input's header, one ``Detection2D``
  per region (``id`` = track id, one hypothesis: class name and mean confidence, the box in camera
  pixels). Published only where ``vision_msgs`` imports (apt ``ros-humble-vision-msgs``; it has
  no PyPI wheel, so the tests here never run this path: docs/objects.md "What is tested").
* ``~/objects/markers``: ``visualization_msgs/ImageMarker``, one ``LINE_LIST`` per frame with
  every box in its class's colour, which Foxglove's image panel draws over the camera image with
  no extra package. Same namespace and id every frame, so each message replaces the last; a
  frame without objects sends an empty list, which clears the boxes.

Everything here runs on the inference thread, after the labels are published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from diagnostic_msgs.msg import KeyValue
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import ColorRGBA, Header

from uwstego.classes import ClassInfo
from uwstego.objects import (
    Detection,
    ObjectSettings,
    Tracker,
    find_regions,
    object_class_ids,
    parse_class_list,
)
from uwstego.segmenter import Segmentation
from uwstego_ros.params import NodeSettings

try:
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:  # not on PyPI; on the vehicle: apt install ros-humble-vision-msgs
    Detection2D = Detection2DArray = ObjectHypothesisWithPose = None
try:  # in ros_core on Humble; the node runs without it as long as no object class is named
    from visualization_msgs.msg import ImageMarker
except ImportError:
    ImageMarker = None

MARKER_NS = "uwstego_objects"
MARKER_LINE_WIDTH = 2.0


def object_settings(s: NodeSettings) -> ObjectSettings:
    return ObjectSettings(classes=parse_class_list(s.object_classes),
                          min_area=s.object_min_area, max_missed=s.object_max_missed,
                          match_iou=s.object_match_iou,
                          match_distance=s.object_match_distance)


def _box_lines(bbox: tuple[int, int, int, int]) -> list[Point]:
    """The four sides of a box as LINE_LIST point pairs (pixel edges, not centres)."""
    x, y, w, h = bbox
    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    points = []
    for i in range(4):
        for cx, cy in (corners[i], corners[(i + 1) % 4]):
            points.append(Point(x=float(cx), y=float(cy), z=0.0))
    return points


def markers_msg(header: Header, detections: Sequence[Detection],
                classes: Sequence[ClassInfo]) -> ImageMarker:
    marker = ImageMarker()
    marker.header = header
    marker.ns, marker.id = MARKER_NS, 0
    marker.type, marker.action = ImageMarker.LINE_LIST, ImageMarker.ADD
    marker.scale = MARKER_LINE_WIDTH
    for det in detections:
        r, g, b = (c / 255.0 for c in classes[det.region.class_id].color)
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0)
        lines = _box_lines(det.region.bbox)
        marker.points.extend(lines)
        marker.outline_colors.extend([colour] * len(lines))
    marker.outline_color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    return marker


def detections_msg(header: Header, detections: Sequence[Detection],
                   classes: Sequence[ClassInfo]) -> Detection2DArray:
    """vision_msgs 4.x (Humble and later): ``bbox.center.position``, ``Detection2D.id``."""
    array = Detection2DArray()
    array.header = header
    for det in detections:
        region = det.region
        x, y, w, h = region.bbox
        d = Detection2D()
        d.header = header
        d.id = str(det.track_id)
        d.bbox.center.position.x = x + w / 2.0
        d.bbox.center.position.y = y + h / 2.0
        d.bbox.size_x, d.bbox.size_y = float(w), float(h)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = classes[region.class_id].name
        hypothesis.hypothesis.score = float(region.confidence or 0.0)
        hypothesis.pose.pose.position.x, hypothesis.pose.pose.position.y = region.centroid
        d.results = [hypothesis]
        array.detections.append(d)
    return array


class ObjectsOutput:
    """The object publishers and tracker of one configuration (None-able: no object classes)."""

    def __init__(self, node: Node, qos: QoSProfile, classes: Sequence[ClassInfo],
                 settings: ObjectSettings) -> None:
        self.classes = list(classes)
        self.class_ids = object_class_ids(settings.classes, [c.name for c in classes])
        self.tracker = Tracker(settings)
        self._settings_seen: NodeSettings | None = None  # the node settings last read
        self.frame = 0
        self.in_frame = 0
        self.markers = node.create_publisher(ImageMarker, "~/objects/markers", qos)
        self.detections = (node.create_publisher(Detection2DArray, "~/objects", qos)
                           if Detection2DArray is not None else None)

    @classmethod
    def create(cls, node: Node, qos: QoSProfile, classes: Sequence[ClassInfo],
               settings: NodeSettings) -> ObjectsOutput | None:
        """The outputs for ``settings``, None without object classes; ValueError naming an
        object class the bundle does not have."""
        wanted = object_settings(settings)
        if not wanted.enabled:
            return None
        if ImageMarker is None:
            raise ValueError("objects need the visualization_msgs package (apt install "
                             "ros-humble-visualization-msgs, or pip install "
                             "ros-visualization-msgs with the PyPI wheels)")
        return cls(node, qos, classes, wanted)

    def publish(self, header: Header, seg: Segmentation, settings: NodeSettings) -> None:
        if settings is not self._settings_seen:
            # NodeSettings is replaced whole when a parameter changes: the runtime object
            # parameters are read again then, not every frame (the classes cannot change).
            self._settings_seen = settings
            self.tracker.settings = dataclasses.replace(object_settings(settings),
                                                        classes=self.tracker.settings.classes)
        regions = find_regions(seg.labels, self.class_ids, self.tracker.settings.min_area,
                               seg.confidence, seg.novelty)
        self.frame += 1
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        found = self.tracker.update(regions, seg.labels.shape, self.frame, stamp)
        self.in_frame = len(found)
        self.markers.publish(markers_msg(header, found, self.classes))
        if self.detections is not None:
            self.detections.publish(detections_msg(header, found, self.classes))

    def diagnostic_values(self) -> list[KeyValue]:
        path = "published" if self.detections is not None else \
            "not published: vision_msgs is not installed"
        return [KeyValue(key="objects_in_frame", value=str(self.in_frame)),
                KeyValue(key="object_tracks_live", value=str(len(self.tracker.tracks))),
                KeyValue(key="object_tracks_total", value=str(self.tracker.issued)),
                KeyValue(key="objects_detection2d", value=path)]

    def destroy(self, node: Node) -> None:
        for pub in (self.markers, self.detections):
            if pub is not None:
                node.destroy_publisher(pub)
