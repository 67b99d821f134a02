"""The values that several parts of the product must agree on, written once.

The fused graph is written by ``export/`` and run by ``edge/backends`` and ``edge/trt``; the ignore
label is read by scoring, masks, replay and synth; the topic names are written by ``uwstego synth``
and looked for by replay, play and training; the node's name and QoS are used by the node, its
launch file and the tools that talk to it. Everything here is plain data (no rclpy, no onnx) so
that every layer may import it. See ``docs/ARCHITECTURE.md`` ("Shared contracts").
"""

from __future__ import annotations

from dataclasses import dataclass

from uwstego.image_size import Size

# --- The fused graph's I/O (docs/ARCHITECTURE.md "Fused ONNX graph I/O") ----------------
GRAPH_IMAGE = "image"
GRAPH_ENHANCE = "enhance"
GRAPH_LABELS = "labels"
GRAPH_CONFIDENCE = "confidence"
# Only in graphs of calibrated models (edge/novelty.py): float [0, 1] per pixel, after the others.
GRAPH_NOVELTY = "novelty"
GRAPH_INPUTS = (GRAPH_IMAGE, GRAPH_ENHANCE)
GRAPH_OUTPUTS = (GRAPH_LABELS, GRAPH_CONFIDENCE)
GRAPH_OUTPUTS_WITH_NOVELTY = (*GRAPH_OUTPUTS, GRAPH_NOVELTY)
# The graph-stage enhancement parameters [c_r, c_b, g_r, g_g, g_b] (edge/enhance.py).
ENHANCE_PARAMS = 5
ENHANCE_SHAPE = (1, ENHANCE_PARAMS)
# ONNX metadata_props key under which export records the number of classes the graph's labels
# index (its centroids, fewer where clusters were merged); the loader checks bundle.json against it.
GRAPH_CLASSES_KEY = "uwstego.num_classes"
# ... and the bundle settings that change the graph's output (BundleMeta.graph_settings, JSON):
# load_bundle refuses a bundle.json that disagrees with them (docs/bundle.md).
GRAPH_SETTINGS_KEY = "uwstego.bundle_settings"


def image_shape(camera: Size) -> tuple[int, int, int, int]:
    """Shape of the graph's uint8 NHWC ``image`` input at this camera size."""
    return (1, camera.height, camera.width, 3)


def map_shape(camera: Size) -> tuple[int, int, int]:
    """Shape of the graph's per-pixel outputs (``labels``, ``confidence``) at this camera size."""
    return (1, camera.height, camera.width)



def graph_io(camera: Size) -> dict[str, tuple[str, list[int]]]:
    """numpy dtype name and shape of every graph input and output at this camera size
    (``novelty`` only in calibrated graphs)."""
    return {GRAPH_IMAGE: ("uint8", list(image_shape(camera))),
            GRAPH_ENHANCE: ("float32", list(ENHANCE_SHAPE)),
            GRAPH_LABELS: ("uint8", list(map_shape(camera))),
            GRAPH_CONFIDENCE: ("float32", list(map_shape(camera))),
            GRAPH_NOVELTY: ("float32", list(map_shape(camera)))}

# --- Frames at another size than the bundle's camera -----------------------------------------
# Relative aspect-ratio difference above which resizing a frame to the camera size visibly
# stretches the scene: the node's diagnostics say ERROR, replay warns in the terminal and report.
ASPECT_TOLERANCE = 0.01


def stretches(frame: Size, camera: Size) -> bool:
    """Whether resizing ``frame`` to ``camera`` changes the scene's aspect ratio."""
    return abs((frame.width / frame.height) / (camera.width / camera.height) - 1.0) \
        > ASPECT_TOLERANCE


# --- Labels -----------------------------------------------------------------------------------
# Ground truth uses it for "not scored"; never a class index (bundles hold at most 255 classes).
IGNORE_LABEL = 255
# The same value in predicted labels: a pixel beyond its cluster's novelty threshold, in bundles
# exported with the unknown option (edge/novelty.py). Scoring counts it as a wrong prediction.
UNKNOWN_LABEL = IGNORE_LABEL

# --- Topics of synthetic dives and the camera topics looked for first ------------------------
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
LABELS_GT_TOPIC = "/camera/labels_gt"
PREFERRED_CAMERA_TOPICS = (IMAGE_TOPIC, COMPRESSED_TOPIC)
# The layout `uwstego synth` writes: dive.json marks the folder; camera frames are in images/
# (labels/ and range/ beside them are ground truth) and/or a rosbag2 in bag/.
SYNTH_DIVE_FILE = "dive.json"
SYNTH_IMAGES_DIR = "images"
SYNTH_BAG_DIR = "bag"
# Navigation of synthetic dives (docs/survey.md §1): odometry in a local east/north/up frame,
# and a GNSS-style fix from a chosen origin when the dive has one.
NAV_ODOM_TOPIC = "/nav/odom"
NAV_FIX_TOPIC = "/nav/fix"

# --- Footage that is not a bag (training sources, replay, sample frames) -------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")

# --- The vehicle node -------------------------------------------------------------------------
NODE_NAME = "uwstego_segmentation"


# The QoS names the node (input) and play (camera topics) accept: "sensor_data" is best effort,
# keep last, as camera drivers publish; "reliable" reaches every subscriber.
QOS_PROFILES = ("sensor_data", "reliable")
DEFAULT_INPUT_QOS = "sensor_data"


@dataclass(frozen=True)
class QosSpec:
    """A QoS profile as plain data; the node turns it into rclpy's ``QoSProfile``."""

    reliability: str  # "reliable" | "best_effort"
    depth: int


# Consumers (rviz, recorders) want every result: reliable, but only the newest is kept.
OUTPUT_QOS = QosSpec(reliability="reliable", depth=1)
