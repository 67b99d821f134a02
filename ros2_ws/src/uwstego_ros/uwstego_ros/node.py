"""The segmentation node: a managed (lifecycle) node, camera frames in, labels, overlay,
confidence, novelty, coverage and /diagnostics out.

Transitions: ``configure`` loads the bundle and builds the backend (a TensorRT engine build takes
minutes on first start) on the inference thread, and creates the publishers; ``activate``
subscribes to the camera; ``deactivate`` unsubscribes and drops the pending frame; ``cleanup``
stops the inference thread, which releases the backend (GPU memory) on the thread that owns it;
``shutdown`` does what is needed from any state. With ``autostart`` (default) the node configures
and activates itself at start. Callbacks only store the newest message; the worker decodes,
segments and publishes with the input's header. Run it with ``ros2 run uwstego_ros
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
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.logging import get_logger
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

from edge.bundle import Bundle, BundleError, load_bundle
from edge.contract import NODE_NAME, QosSpec
from edge.coverage import coverage_names
from edge.novelty import novelty_mono8
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
from uwstego_ros.objects_out import ObjectsOutput
from uwstego_ros.params import NodeSettings, declare_settings, refused_while_active, updates_from
from uwstego_ros.stats import StreamStats
from uwstego_ros.worker import InferenceWorker

EXIT_START_FAILED = 1
EXIT_BACKEND_FAILED = 2
# max_pixels:=0 caps frames at this many times the bundle's camera size.
MAX_PIXELS_FACTOR = 4
PROGRESS_EVERY_S = 10.0
SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


def input_qos(settings: NodeSettings) -> QoSProfile:
    if settings.qos == "sensor_data":
        return QoSProfile(depth=settings.qos_depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
    return QoSProfile(depth=settings.qos_depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)


def output_qos(settings: NodeSettings) -> QoSProfile:
    reliability = "reliable" if settings.output_qos == "reliable" else "best_effort"
    return qos_profile(QosSpec(reliability=reliability, depth=settings.output_qos_depth))


class Outputs:
    """The publishers of one configuration (created by configure, destroyed by cleanup)."""

    def __init__(self, node: LifecycleNode, qos: QoSProfile) -> None:
        self.labels = node.create_publisher(Image, "~/labels", qos)
        self.overlay = node.create_publisher(Image, "~/overlay", qos)
        self.confidence = node.create_publisher(Image, "~/confidence", qos)
        self.novelty = node.create_publisher(Image, "~/novelty", qos)
        self.camera_info = node.create_publisher(CameraInfo, "~/camera_info", qos)
        self.coverage = node.create_publisher(Float32MultiArray, "~/coverage", qos)

    def destroy(self, node: LifecycleNode) -> None:
        for pub in (self.labels, self.overlay, self.confidence, self.novelty, self.camera_info,
                    self.coverage):
            node.destroy_publisher(pub)


class SegmentationNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.settings = declare_settings(self)
        self.lifecycle = "unconfigured"
        self.failure = ""  # why the last transition failed
        self.stats = StreamStats()
        self.mailbox = Mailbox()
        self.bundle: Bundle | None = None
        self.worker: InferenceWorker | None = None
        self.outputs: Outputs | None = None
        self.objects: ObjectsOutput | None = None
        self._subscriptions: list = []
        self._topic = ""
        self._camera_info: CameraInfo | None = None
        self._input_group = MutuallyExclusiveCallbackGroup()
        # Diagnostics keep coming while a transition (an engine build) blocks the services.
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # lifecycle transitions

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        self.lifecycle = "configuring"
        try:
            bundle = load_bundle(s.bundle)
        except (BundleError, ValueError) as exc:
            return self._failed(str(exc))
        self.bundle = bundle
        self.class_names = [c.name for c in bundle.meta.classes]
        try:
            self.coverage_names = coverage_names(self.class_names, bundle.meta.novelty is not None)
        except ValueError as exc:
            return self._failed(str(exc))
        if s.publish_novelty and bundle.meta.novelty is None:
            self.get_logger().warning(f"publish_novelty: bundle {bundle.path} has no novelty "
                                      "calibration; ~/novelty stays silent")
        self.lut = palette(bundle.meta.classes)
        self.stats = StreamStats()
        self.mailbox = Mailbox()
        self.outputs = Outputs(self, output_qos(s))
        try:
            self.objects = ObjectsOutput.create(self, output_qos(s), bundle.meta.classes, s)
        except ValueError as exc:
            self._release()
            return self._failed(f"object_classes: {exc}")
        self.get_logger().info(
            f"configuring: bundle {bundle.path} ({len(self.class_names)} classes, camera "
            f"{bundle.meta.camera}); backend {s.backend} (a TensorRT engine build takes minutes "
            "on the first start)")
        self.worker = InferenceWorker(self._make_segmenter, self.mailbox, self.stats,
                                      self._publish, lambda: self.settings.max_rate,
                                      self._max_pixels, lambda: self.settings.reduced_decode,
                                      self.get_logger())
        started = time.monotonic()
        self.worker.start()
        while not self.worker.ready.wait(PROGRESS_EVERY_S):
            self.get_logger().info(f"still configuring the {s.backend} backend "
                                   f"({time.monotonic() - started:.0f} s)")
        if self.worker.failed:
            error = self.worker.error
            self._release()
            return self._failed(f"backend {s.backend}: {error}")
        self.get_logger().info(f"configured in {time.monotonic() - started:.1f} s: "
                               f"{self.worker.backend_info}")
        self.lifecycle = "inactive"
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        qos = input_qos(s)
        msg_type, topic = ((CompressedImage, "image/compressed") if s.transport == "compressed"
                           else (Image, "image"))
        sub = self.create_subscription(msg_type, topic, self._on_image, qos,
                                       callback_group=self._input_group)
        self._subscriptions = [sub]
        self._topic = sub.topic_name
        if s.use_camera_info:
            self._subscriptions.append(self.create_subscription(
                CameraInfo, "camera_info", self._on_camera_info, qos,
                callback_group=self._input_group))
        self.stats.waiting_since_now()
        self.lifecycle = "active"
        self.get_logger().info(f"active: segmenting {self._topic} ({s.transport}, {s.qos} QoS)")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.lifecycle = "inactive"
        self.get_logger().info("inactive: not taking frames")
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.lifecycle = "unconfigured"
        self.get_logger().info("cleaned up: backend released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        self.lifecycle = "finalized"
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        self.lifecycle = "unconfigured"
        return SUCCESS

    def _failed(self, reason: str) -> TransitionCallbackReturn:
        self.failure = reason
        self.lifecycle = "unconfigured"
        if not self.settings.autostart:  # with autostart, main() says it once and exits
            self.get_logger().error(f"configure failed: {reason}")
        return FAILURE

    def _unsubscribe(self) -> None:
        for sub in self._subscriptions:
            self.destroy_subscription(sub)
        self._subscriptions = []
        self.mailbox.discard()

    def _release(self) -> None:
        if self.worker is not None:
            # The worker closes the backend on its own thread (CUDA contexts are per thread).
            self.worker.stop()
            self.worker = None
        if self.outputs is not None:
            self.outputs.destroy(self)
            self.outputs = None
        if self.objects is not None:
            self.objects.destroy(self)
            self.objects = None
        self.bundle = None
        self._camera_info = None

    @property
    def fatal_error(self) -> str:
        """Set once the backend failed after a successful configure: the process must end."""
        worker = self.worker
        return worker.error if worker is not None and worker.failed and worker.ran else ""

    # executor callbacks: store and return

    def _max_pixels(self) -> int:
        return self.settings.max_pixels or MAX_PIXELS_FACTOR * self.bundle.meta.camera.pixels

    def _make_segmenter(self) -> Segmenter:
        s = self.settings
        return Segmenter(self.bundle, backend=s.backend, precision=s.precision,
                         cache_dir=s.engine_cache_dir or None)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.received()
        self.mailbox.put(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.stats.camera_info_received()
        self._camera_info = msg

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates = updates_from(params)
        reason = refused_while_active(updates) if self.lifecycle == "active" else None
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        try:
            self.settings = self.settings.with_values(updates)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _state_text(self) -> str:
        worker = self.worker
        if worker is not None and worker.failed:
            return "error"
        return {"unconfigured": "unconfigured: waiting for configure",
                "configuring": "configuring: loading the bundle and the backend",
                "inactive": "inactive: configured, not segmenting",
                "active": "running",
                "finalized": "finalized"}[self.lifecycle]

    def _publish_diagnostics(self) -> None:
        s, worker, bundle = self.settings, self.worker, self.bundle
        backend = (worker.backend_info if worker is not None else {}) or {"backend": s.backend}
        camera = bundle.meta.camera if bundle else None
        expect = Expectations(
            topic=self._topic, transport=s.transport, camera=camera, stale_after=s.stale_after,
            expected_rate=s.expected_rate, warn_drop_ratio=s.warn_drop_ratio,
            warn_bad_ratio=s.warn_bad_ratio, warn_novel_ratio=s.warn_novel_ratio)
        snap = self.stats.snapshot(self.mailbox.dropped)
        array = build_diagnostics(
            f"{self.get_name()}: segmentation", self.get_clock().now().to_msg(), snap,
            self._state_text(), backend, expect, worker.error if worker is not None else "")
        objects = self.objects
        if objects is not None:
            array.status[0].values.extend(objects.diagnostic_values())
        self.pub_diagnostics.publish(array)

    # worker thread

    def _publish(self, letter: Letter, rgb: np.ndarray, seg: Segmentation) -> None:
        outputs = self.outputs
        if outputs is None:  # cleaned up while this frame was being segmented
            return
        header = letter.msg.header
        settings = self.settings
        outputs.labels.publish(array_to_image(seg.labels, header))
        fractions = coverage(seg.labels, len(self.class_names))
        novel = seg.novel_fraction
        if novel is not None:
            fractions = np.append(fractions, np.float32(novel))
        outputs.coverage.publish(coverage_to_msg(fractions, self.coverage_names))
        info = self._camera_info
        if info is not None:
            h, w = seg.labels.shape
            outputs.camera_info.publish(scale_camera_info(info, w, h, header))
        if settings.publish_overlay:
            outputs.overlay.publish(array_to_image(
                overlay(rgb, seg.labels, self.lut, settings.overlay_alpha), header))
        if settings.publish_confidence:
            outputs.confidence.publish(array_to_image(seg.confidence, header))
        if settings.publish_novelty and seg.novelty is not None:
            outputs.novelty.publish(array_to_image(novelty_mono8(seg.novelty), header))
        objects = self.objects
        if objects is not None:
            objects.publish(header, seg, settings)
        now = self.get_clock().now()
        stamp_delay = (now - Time.from_msg(header.stamp)).nanoseconds / 1e6
        self.stats.published((time.monotonic() - letter.received) * 1000.0,
                             seg.timings_ms["total"], stamp_delay, novel)


def _autostart(node: SegmentationNode) -> bool:
    if node.trigger_configure() != SUCCESS:
        return False
    if node.trigger_activate() != SUCCESS:
        node.failure = node.failure or "activate failed"
        return False
    return True


def main(args: Sequence[str] | None = None) -> int:
    rclpy.init(args=args)
    logger = get_logger(NODE_NAME)
    node = None
    executor = None
    try:
        try:
            node = SegmentationNode()
        except (BundleError, ValueError, ParameterException) as exc:
            logger.fatal(f"cannot start: {exc}")
            return EXIT_START_FAILED
        # Transitions, diagnostics and the camera callbacks each get a thread of their own.
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        if node.settings.autostart and not _autostart(node):
            logger.fatal(f"cannot start: {node.failure}")
            return EXIT_START_FAILED
        while rclpy.ok() and node.lifecycle != "finalized" and not node.fatal_error:
            executor.spin_once(timeout_sec=0.2)
        if node.fatal_error:
            logger.fatal(node.fatal_error)
            return EXIT_BACKEND_FAILED
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.on_shutdown(None)
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
