"""numpy <-> outgoing messages, written the way that is fast on Humble too.

Humble's generated setters check every element of a ``bytes`` value (0.6 s per 1080p frame), so
``data`` is always assigned an ``array.array('B')``, which takes the fast path on every distro.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32MultiArray, Header, MultiArrayDimension

from uwstego.contract import QosSpec
from uwstego.coverage import coverage_dimension

_ENCODINGS = {(np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint8), 3): "rgb8",
              (np.dtype(np.float32), 1): "32FC1"}


def array_to_image(arr: np.ndarray, header: Header) -> Image:
    """An HxW / HxWx3 uint8 or HxW float32 array -> Image with ``header`` (mono8/rgb8/32FC1)."""
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    encoding = _ENCODINGS.get((arr.dtype, channels))
    if encoding is None:
        raise ValueError(f"no image encoding for {arr.dtype} with {channels} channels")
    arr = np.ascontiguousarray(arr)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(arr.dtype.itemsize > 1 and sys.byteorder == "big")
    msg.step = int(arr.strides[0])
    msg.data = array.array("B", arr.tobytes())
    return msg


def scale_camera_info(info: CameraInfo, width: int, height: int, header: Header) -> CameraInfo:
    """``info`` re-expressed for an image of ``width`` x ``height`` (K, P and ROI scaled)."""
    out = CameraInfo()
    out.header = header
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = list(info.r)
    out.binning_x, out.binning_y = info.binning_x, info.binning_y
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3).copy()
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4).copy()
    # fx, cx and the Tx term scale with x; fy, cy with y. Row 3 stays homogeneous.
    k[0] *= sx
    k[1] *= sy
    p[0] *= sx
    p[1] *= sy
    out.k = k.ravel().tolist()
    out.p = p.ravel().tolist()
    out.width, out.height = int(width), int(height)
    roi = info.roi
    out.roi.x_offset = round(roi.x_offset * sx)
    out.roi.y_offset = round(roi.y_offset * sy)
    out.roi.width = round(roi.width * sx)
    out.roi.height = round(roi.height * sy)
    out.roi.do_rectify = roi.do_rectify
    return out


def coverage_to_msg(values: np.ndarray, class_names: Sequence[str]) -> Float32MultiArray:
    """Per-class pixel fractions; the one dimension's label lists the class names, comma-joined."""
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(**coverage_dimension(class_names))]
    msg.data = array.array("f", np.asarray(values, dtype=np.float32).tobytes())
    return msg


def qos_profile(spec: QosSpec) -> QoSProfile:
    """rclpy's profile for a :class:`uwstego.contract.QosSpec` (keep last, volatile)."""
    reliability = {"reliable": ReliabilityPolicy.RELIABLE,
                   "best_effort": ReliabilityPolicy.BEST_EFFORT}[spec.reliability]
    return QoSProfile(depth=spec.depth, reliability=reliability, history=HistoryPolicy.KEEP_LAST)
