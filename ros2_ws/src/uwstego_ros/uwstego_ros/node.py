"""The segmentation node: a managed (lifecycle) node, camera frames in, labels, overlay,
confidence, novelty, coverage and /diagnostics out.

Transitions: ``configure`` loads the bundle and builds the backend (a TensorRT engine build takes
minutes on first start) on the inference thread, and creates the publishers; ``activate``
subscribes to the camera; ``deactivate`` unsubscribes and drops the pending frame; ``cleanup``
stops the inference thread, which releases the backend (GPU memory) on the thread that owns it;
``shutdown`` does what is needed from any state. With ``autostart`` (default) the node
configures and activates itself at start. Callbacks only store the newest message; the worker
decodes, segments and publishes with the input's header.

Transitions run on executor threads while the camera callbacks run on others, so they never
create or destroy a subscription themselves: destroying one while the executor builds its wait
set kills the process (``InvalidHandle``, docs/ros2.md section 8). A transition opens or closes
the gate of the camera callbacks at once and records which subscriptions it wants;
``sync_inputs``, called by the thread that spins the executor between two spins, makes them.
Everything the inference thread reads of one configuration (bundle, publishers, class names) is
one ``Configuration``, replaced whole by a model swap and never edited, so a frame is published
with the model that segmented it or not at all.

Run it with ``ros2 run uwstego_ros
segmentation_node --ros-args -p bundle:=/path/to/bundle`` or, without colcon, ``python -m
uwstego_ros --ros-args ...`` (``uwstego_ros/__main__.py``: signals are handled from the first
import on; exit codes in ``uwstego_ros/stopping.py``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32MultiArray

from uwstego.bundle import Bundle, BundleError, load_bundle
from uwstego.contract import NODE_NAME, QosSpec
from uwstego.coverage import coverage_names
from uwstego.novelty import novelty_mono8
from uwstego.segmenter import Segmentation, Segmenter
from uwstego.visualize import coverage, overlay, palette
from uwstego_ros.conversions import (
    array_to_image,
    coverage_to_msg,
    qos_profile,
    scale_camera_info,
)
from uwstego_ros.diagnostics import (
    RANDOM_WEIGHTS,
    Expectations,
    build_diagnostics,
    trained_on_random_weights,
)
from uwstego_ros.mailbox import Letter, Mailbox
from uwstego_ros.objects_out import ObjectsOutput
from uwstego_ros.params import (
    NodeSettings,
    declare_settings,
    pixel_cap,
    refused_while_active,
    updates_from,
)
from uwstego_ros.stats import StreamStats
from uwstego_ros.stopping import (
    EXIT_BACKEND_FAILED,
    EXIT_START_FAILED,
    EXIT_STOPPED,
    StopRequest,
)
from uwstego_ros.worker import InferenceWorker

PROGRESS_EVERY_S = 10.0
# How often the spin loop and a configure waiting for the backend check for a stop request.
STOP_CHECK_S = 0.2
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
    """The publishers of one configuration (created by configure, destroyed by cleanup).

    The inference thread publishes one frame's results holding ``lock``, and ``destroy`` takes
    it too: a frame is published whole or, once the publishers are gone, not at all."""

    def __init__(self, node: LifecycleNode, qos: QoSProfile) -> None:
        self.lock = threading.Lock()
        self.destroyed = False
        self.labels = node.create_publisher(Image, "~/labels", qos)
        self.overlay = node.create_publisher(Image, "~/overlay", qos)
        self.confidence = node.create_publisher(Image, "~/confidence", qos)
        self.novelty = node.create_publisher(Image, "~/novelty", qos)
        self.camera_info = node.create_publisher(CameraInfo, "~/camera_info", qos)
        self.coverage = node.create_publisher(Float32MultiArray, "~/coverage", qos)

    def destroy(self, node: LifecycleNode) -> None:
        with self.lock:
            self.destroyed = True
            for pub in (self.labels, self.overlay, self.confidence, self.novelty,
                        self.camera_info, self.coverage):
                node.destroy_publisher(pub)


@dataclass(frozen=True)
class Configuration:
    """What one ``configure`` made and the inference thread reads."""

    bundle: Bundle
    class_names: list[str]
    coverage_names: list[str]
    lut: np.ndarray
    outputs: Outputs
    objects: ObjectsOutput | None  # None: no object classes named


class SegmentationNode(LifecycleNode):
    def __init__(self, stopping: threading.Event | None = None, **kwargs) -> None:
        """``stopping``: set when the process is to end (a signal): a configure waiting for the
        backend gives up instead of holding the process until the engine is built."""
        super().__init__(NODE_NAME, **kwargs)
        self.settings = declare_settings(self)
        self.lifecycle = "unconfigured"
        self.failure = ""  # why the last transition failed
        self.stats = StreamStats()
        self.mailbox = Mailbox()
        self.config: Configuration | None = None
        self.worker: InferenceWorker | None = None
        # The camera subscriptions: the settings the last transition wants them made from
        # (None: none), the settings they were made from, and the subscriptions themselves.
        self._inputs_wanted: NodeSettings | None = None
        self._inputs_made: NodeSettings | None = None
        self._inputs: list = []
        self._taking = False  # the gate of the camera callbacks
        self._topic = ""
        self._camera_info: CameraInfo | None = None
        self.stopping = stopping or threading.Event()
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
            bundle = load_bundle(s.bundle, trusted_keys=s.trusted_keys)
        except (BundleError, ValueError) as exc:
            return self._failed(str(exc))
        class_names = [c.name for c in bundle.meta.classes]
        try:
            names = coverage_names(class_names, bundle.meta.novelty is not None)
        except ValueError as exc:
            return self._failed(str(exc))
        if trained_on_random_weights(bundle.meta.provenance):
            self.get_logger().warning(f"bundle {bundle.path}: {RANDOM_WEIGHTS} (its backbone was "
                                      "trained from random weights, provenance "
                                      "training.random_weights); for tests and demos only")
        if s.publish_novelty and bundle.meta.novelty is None:
            self.get_logger().warning(f"publish_novelty: bundle {bundle.path} has no novelty "
                                      "calibration; ~/novelty stays silent")
        self.stats = StreamStats()
        self.mailbox = Mailbox()
        outputs = Outputs(self, output_qos(s))
        try:
            objects = ObjectsOutput.create(self, output_qos(s), bundle.meta.classes, s)
        except ValueError as exc:
            outputs.destroy(self)
            return self._failed(f"object_classes: {exc}")
        config = Configuration(bundle, class_names, names, palette(bundle.meta.classes),
                               outputs, objects)
        self.config = config
        self.get_logger().info(
            f"configuring: bundle {bundle.path} ({len(class_names)} classes, camera "
            f"{bundle.meta.camera}); backend {s.backend} (a TensorRT engine build takes minutes "
            "on the first start)")
        self.worker = InferenceWorker(lambda: self._make_segmenter(bundle), self.mailbox,
                                      self.stats, lambda *result: self._publish(config, *result),
                                      lambda: self.settings.max_rate,
                                      lambda: self._max_pixels(bundle),
                                      lambda: self.settings.reduced_decode, self.get_logger())
        worker = self.worker
        started = reported = time.monotonic()
        worker.start()
        while not worker.ready.wait(STOP_CHECK_S):
            if self.stopping.is_set():  # main() says why and releases the backend
                return FAILURE
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                reported = time.monotonic()
                self.get_logger().info(f"still configuring the {s.backend} backend "
                                       f"({reported - started:.0f} s)")
        if worker.failed:
            self._release()
            return self._failed(f"backend {s.backend}: {worker.error}")
        self.get_logger().info(f"configured in {time.monotonic() - started:.1f} s: "
                               f"{worker.backend_info}")
        self.lifecycle = "inactive"
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        self._topic = self.resolve_topic_name(_image_topic(s))
        self.stats.waiting_since_now()
        self.mailbox.discard()  # a frame a callback stored while the gate was closing
        self._inputs_wanted = s
        self._taking = True
        self._wake_executor()
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
        """Stop taking frames now; the subscriptions go at the next ``sync_inputs``."""
        self._taking = False
        self._inputs_wanted = None
        self.mailbox.discard()
        self._wake_executor()

    def _wake_executor(self) -> None:
        executor = self.executor
        if executor is not None:
            executor.wake()

    def sync_inputs(self) -> None:
        """Make the camera subscriptions the last transition asked for. Call it only from the
        thread that spins the executor, between spins, where no wait set is being built."""
        wanted = self._inputs_wanted
        if wanted is self._inputs_made:
            return
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs = []
        self._inputs_made = wanted
        if wanted is None:
            return
        qos = input_qos(wanted)
        msg_type = CompressedImage if wanted.transport == "compressed" else Image
        self._inputs.append(self.create_subscription(msg_type, _image_topic(wanted),
                                                     self._on_image, qos,
                                                     callback_group=self._input_group))
        if wanted.use_camera_info:
            self._inputs.append(self.create_subscription(
                CameraInfo, "camera_info", self._on_camera_info, qos,
                callback_group=self._input_group))

    def _release(self) -> None:
        if self.worker is not None:
            # The worker closes the backend on its own thread (CUDA contexts are per thread).
            self.worker.stop()
            self.worker = None
        if self.config is not None:
            # Outputs first: it waits for a frame being published and then refuses the next,
            # so the objects output is idle when it goes.
            self.config.outputs.destroy(self)
            if self.config.objects is not None:
                self.config.objects.destroy(self)
            self.config = None
        self._camera_info = None

    @property
    def fatal_error(self) -> str:
        """Set once the backend failed after a successful configure: the process must end."""
        worker = self.worker
        return worker.error if worker is not None and worker.failed and worker.ran else ""

    # executor callbacks: store and return

    def _max_pixels(self, bundle: Bundle) -> int:
        return pixel_cap(self.settings.max_pixels, bundle.meta.camera)

    def _make_segmenter(self, bundle: Bundle) -> Segmenter:
        s = self.settings
        return Segmenter(bundle, backend=s.backend, precision=s.precision,
                         cache_dir=s.engine_cache_dir or None, threads=s.threads,
                         cpu_graph=s.cpu_graph)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if not self._taking:  # taken in the moment between deactivate and unsubscribing
            return
        self.stats.received()
        self.mailbox.put(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if not self._taking:
            return
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
        s, worker, config = self.settings, self.worker, self.config
        backend = (worker.backend_info if worker is not None else {}) or {"backend": s.backend}
        bundle = config.bundle if config else None
        expect = Expectations(
            topic=self._topic, transport=s.transport, camera=bundle.meta.camera if bundle else None,
            stale_after=s.stale_after, expected_rate=s.expected_rate,
            warn_drop_ratio=s.warn_drop_ratio, warn_bad_ratio=s.warn_bad_ratio,
            warn_novel_ratio=s.warn_novel_ratio,
            max_pixels=self._max_pixels(bundle) if bundle else s.max_pixels,
            random_weights=bundle is not None and trained_on_random_weights(bundle.meta.provenance))
        snap = self.stats.snapshot(self.mailbox.dropped)
        array = build_diagnostics(
            f"{self.get_name()}: segmentation", self.get_clock().now().to_msg(), snap,
            self._state_text(), backend, expect, worker.error if worker is not None else "")
        objects = config.objects if config else None
        if objects is not None:
            array.status[0].values.extend(objects.diagnostic_values())
        self.pub_diagnostics.publish(array)

    # worker thread

    def _publish(self, config: Configuration, letter: Letter, rgb: np.ndarray,
                 seg: Segmentation) -> None:
        with config.outputs.lock:
            if config.outputs.destroyed:  # cleaned up while this frame was being segmented
                return
            self._publish_results(config, letter, rgb, seg)

    def _publish_results(self, config: Configuration, letter: Letter, rgb: np.ndarray,
                         seg: Segmentation) -> None:
        outputs = config.outputs
        header = letter.msg.header
        settings = self.settings
        outputs.labels.publish(array_to_image(seg.labels, header))
        fractions = coverage(seg.labels, len(config.class_names))
        novel = seg.novel_fraction
        if novel is not None:
            fractions = np.append(fractions, np.float32(novel))
        outputs.coverage.publish(coverage_to_msg(fractions, config.coverage_names))
        info = self._camera_info
        if info is not None:
            h, w = seg.labels.shape
            outputs.camera_info.publish(scale_camera_info(info, w, h, header))
        if settings.publish_overlay:
            outputs.overlay.publish(array_to_image(
                overlay(rgb, seg.labels, config.lut, settings.overlay_alpha), header))
        if settings.publish_confidence:
            outputs.confidence.publish(array_to_image(seg.confidence, header))
        if settings.publish_novelty and seg.novelty is not None:
            outputs.novelty.publish(array_to_image(novelty_mono8(seg.novelty), header))
        if config.objects is not None:
            config.objects.publish(header, seg, settings)
        now = self.get_clock().now()
        stamp_delay = (now - Time.from_msg(header.stamp)).nanoseconds / 1e6
        self.stats.published((time.monotonic() - letter.received) * 1000.0,
                             seg.timings_ms["total"], stamp_delay, novel)


def _image_topic(settings: NodeSettings) -> str:
    return "image/compressed" if settings.transport == "compressed" else "image"


def _autostart(node: SegmentationNode) -> bool:
    if node.trigger_configure() != SUCCESS:
        return False
    if node.trigger_activate() != SUCCESS:
        node.failure = node.failure or "activate failed"
        return False
    return True


def _stopped(stop: StopRequest, logger) -> int:
    if stop.during in ("active", "inactive"):
        logger.info(f"stopped by {stop.signal_name} while {stop.during}")
    else:  # never segmented: a supervisor's log must not read like a clean run
        logger.warning(f"stopped by {stop.signal_name} while {stop.during}; the node never ran"
                       + (" (the backend was still being built)" if stop.during == "configuring"
                          else ""))
    return EXIT_STOPPED


def main(args: Sequence[str] | None = None) -> int:
    """Run the node until shutdown or a signal; exit codes in uwstego_ros/stopping.py."""
    node = None
    stop = StopRequest(lambda: node.lifecycle if node is not None else "starting")
    stop.install()
    logger = get_logger(NODE_NAME)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    executor = None
    try:
        try:
            node = SegmentationNode(stopping=stop.event)
        except (BundleError, ValueError, ParameterException) as exc:
            logger.fatal(f"cannot start: {exc}")
            return EXIT_START_FAILED
        # Transitions, diagnostics and the camera callbacks each get a thread of their own.
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        if node.settings.autostart and not stop.requested and not _autostart(node) \
                and not stop.requested:
            logger.fatal(f"cannot start: {node.failure}")
            return EXIT_START_FAILED
        while rclpy.ok() and not stop.requested and node.lifecycle != "finalized" \
                and not node.fatal_error:
            node.sync_inputs()
            executor.spin_once(timeout_sec=STOP_CHECK_S)
        if node.fatal_error:
            logger.fatal(node.fatal_error)
            return EXIT_BACKEND_FAILED
    except ExternalShutdownException:
        pass
    finally:
        stop.event.set()  # a configure still waiting on an executor thread gives up
        if node is not None:
            node.on_shutdown(None)
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        rclpy.try_shutdown()
    if not stop.signal_name:
        return EXIT_STOPPED
    return _stopped(stop, node.get_logger() if node is not None else logger)


if __name__ == "__main__":  # python -m uwstego_ros also covers signals while modules load
    sys.exit(main())
