"""Objects: the connected regions of the classes a user names as objects, and their tracks.

Torch-free and cheap (OpenCV's connected components); the node publishes them per frame and a
replay records them per model (docs/objects.md).
"""

from uwstego.objects.regions import Region, find_regions
from uwstego.objects.settings import ObjectSettings, object_class_ids, parse_class_list
from uwstego.objects.tracking import Detection, Track, Tracker, box_iou

__all__ = ["Detection", "ObjectSettings", "Region", "Track", "Tracker", "box_iou", "find_regions",
           "object_class_ids", "parse_class_list"]
