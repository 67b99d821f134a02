"""The segmentation node: camera frames in, labels, overlay, confidence, coverage out.

Callbacks only store the newest message; one worker thread decodes and segments it, and
publishes the results with the input's header. Run it with ``ros2 run uwstego_ros
segmentation_node --ros-args -p bundle:=/path/to/bundle`` or, without colcon, ``python -m
uwstego_ros.node --ros-args ...``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32MultiArray

from edge.bundle import BundleError, load_bundle
from edge.contract import NODE_NAME
from edge.contract import OUTPUT_QOS as OUTPUT_QOS_SPEC
from edge.segmenter import Segmentation, Segmenter
from edge.visualize import coverage, overlay, palette
from uwstego_ros.conversions import (
    array_to_image,
    coverage_to_msg,
    qos_profile,
    scale_camera_info,
)
from uwstego_ros.diagnostics import Expectations, build_diagnostics
from uwstego_ros.mailbox import Letter, Mailbox
from uwstego_ros.params import NodeSettings, declare_settings, updates_from
from uwstego_ros.stats import StreamStats
from uwstego_ros.worker import InferenceWorker

EXIT_START_FAILED = 1
# max_pixels:=0 caps frames at this many times the bundle's camera size.
MAX_PIXELS_FACTOR = 4
OUTPUT_QOS = qos_profile(OUTPUT_QOS_SPEC)


def input_qos(settings: NodeSettings) -> QoSProfile:
    if settings.qos == "sensor_data":
        return QoSProfile(depth=settings.qos_depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
    return QoSProfile(depth=settings.qos_depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)


class SegmentationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.settings = declare_settings(self)
        # Fail before any topic exists: a missing or damaged bundle is a start-up error.
        self.bundle = load_bundle(self.settings.bundle)
        self.class_names = [c.name for c in self.bundle.meta.classes]
        self.lut = palette(self.bundle.meta.classes)
        self.stats = StreamStats()
        self.mailbox = Mailbox()
        self._camera_info: CameraInfo | None = None

        self.pub_labels = self.create_publisher(Image, "~/labels", OUTPUT_QOS)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", OUTPUT_QOS)
        self.pub_confidence = self.create_publisher(Image, "~/confidence", OUTPUT_QOS)
        self.pub_camera_info = self.create_publisher(CameraInfo, "~/camera_info", OUTPUT_QOS)
        self.pub_coverage = self.create_publisher(Float32MultiArray, "~/coverage", OUTPUT_QOS)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.worker = InferenceWorker(self._make_segmenter, self.mailbox, self.stats,
                                      self._publish, lambda: self.settings.max_rate,
                                      self._max_pixels, self.get_logger())
        self.worker.start()

        qos = input_qos(self.settings)
        if self.settings.transport == "compressed":
            self.sub_image = self.create_subscription(CompressedImage, "image/compressed",
                                                      self._on_image, qos)
        else:
            self.sub_image = self.create_subscription(Image, "image", self._on_image, qos)
        self.stats.waiting_since_now()
        if self.settings.use_camera_info:
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"bundle {self.bundle.path} ({len(self.class_names)} classes, camera "
            f"{self.bundle.meta.camera}); input {self.settings.transport} with "
            f"{self.settings.qos} QoS; backend {self.settings.backend} starting")

    def _max_pixels(self) -> int:
        camera = self.bundle.meta.camera
        return self.settings.max_pixels or MAX_PIXELS_FACTOR * camera.width * camera.height

    def _make_segmenter(self) -> Segmenter:
        s = self.settings
        return Segmenter(self.bundle, backend=s.backend, precision=s.precision,
                         cache_dir=s.engine_cache_dir or None)

    # executor callbacks: store and return

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.received()
        self.mailbox.put(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.stats.camera_info_received()
        self._camera_info = msg

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self.settings = self.settings.with_values(updates_from(params))
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        backend = self.worker.backend_info or {"backend": self.settings.backend}
        if self.worker.error:
            backend = {**backend, "error": self.worker.error}
        snap = self.stats.snapshot(self.mailbox.dropped)
        s, camera = self.settings, self.bundle.meta.camera
        expect = Expectations(
            topic=self.sub_image.topic_name, transport=s.transport,
            camera=(camera.width, camera.height), stale_after=s.stale_after,
            expected_rate=s.expected_rate, warn_drop_ratio=s.warn_drop_ratio,
            warn_bad_ratio=s.warn_bad_ratio)
        self.pub_diagnostics.publish(build_diagnostics(
            f"{self.get_name()}: segmentation", self.get_clock().now().to_msg(), snap,
            self.worker.state, backend, expect, self.worker.error))

    # worker thread

    def _publish(self, letter: Letter, rgb: np.ndarray, seg: Segmentation) -> None:
        header = letter.msg.header
        settings = self.settings
        self.pub_labels.publish(array_to_image(seg.labels, header))
        self.pub_coverage.publish(
            coverage_to_msg(coverage(seg.labels, len(self.class_names)), self.class_names))
        info = self._camera_info
        if info is not None:
            h, w = seg.labels.shape
            self.pub_camera_info.publish(scale_camera_info(info, w, h, header))
        if settings.publish_overlay:
            self.pub_overlay.publish(array_to_image(
                overlay(rgb, seg.labels, self.lut, settings.overlay_alpha), header))
        if settings.publish_confidence:
            self.pub_confidence.publish(array_to_image(seg.confidence, header))
        now = self.get_clock().now()
        stamp_delay = (now - Time.from_msg(header.stamp)).nanoseconds / 1e6
        self.stats.published((time.monotonic() - letter.received) * 1000.0,
                             seg.timings_ms["total"], stamp_delay)

    def shutdown(self) -> None:
        self.worker.stop()


def main(args: Sequence[str] | None = None) -> int:
    rclpy.init(args=args)
    logger = get_logger(NODE_NAME)
    node = None
    try:
        try:
            node = SegmentationNode()
        except (BundleError, ValueError, ParameterException) as exc:
            logger.fatal(f"cannot start: {exc}")
            return EXIT_START_FAILED
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not node.worker.failed:
            executor.spin_once(timeout_sec=0.2)
        if node.worker.failed:
            logger.fatal(node.worker.error)
            return EXIT_START_FAILED
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

