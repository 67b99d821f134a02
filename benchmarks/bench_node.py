"""Latency and memory of the segmentation node, measured through real DDS.

1. Overhead: 640x480 frames, raw (with the large-data Fast DDS profile) and JPEG, sent one at a
   time; end-to-end latency (header.stamp -> labels received) minus the time of the Segmenter
   alone on the same frames in this process. Target: median overhead <= 5 ms (issue 23).
2. Slow inference: a 30 Hz JPEG camera and a model several times slower than the frame period,
   for 2 minutes (20 s with --quick). Targets: p95 latency <= 2 x (one inference + overhead), and
   the node's RSS does not grow.
3. Decoding, in this process: the declared-size header check every compressed frame now passes
   (and the refusal of a 20000x20000 bomb), a full JPEG decode, and for cameras at least twice
   the bundle's size a full decode + resize against a reduced-scale decode (``reduced_decode``).

    python benchmarks/bench_node.py [--quick] [--decode-only] [--bundle B] [--slow-bundle B]

Prints one JSON object. Without --bundle/--slow-bundle, tiny random-weight bundles are exported
(needs the `export` extra). Runs itself in a private network namespace when it can.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAMERA = (640, 480)
PROFILE = REPO / "ros2_ws" / "src" / "uwstego_ros" / "config" / "fastdds_large_data.xml"
NODE = "uwstego_segmentation"
OVERHEAD_TARGET_MS = 5.0  # end to end minus the Segmenter alone, 640x480, quiet machine


sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "ros"))
from ros_harness import isolate_script  # noqa: E402

isolate_script()
# 640x480 rgb8 (900 KiB) exceeds Fast DDS's default 512 KiB shared-memory segment.
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(PROFILE)

import array  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from uwstego.bundle import Bundle, load_bundle  # noqa: E402
from uwstego.image_size import Size  # noqa: E402
from uwstego.rosimage import (  # noqa: E402
    ImageDecodeError,
    compressed_header,
    decode_compressed,
    decode_image,
    encode_jpeg,
    reduction_for,
)
from uwstego.segmenter import Segmenter  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from ros_harness import NodeProcess, Probe  # noqa: E402
from timing import emit, time_ms  # noqa: E402


def frames(count: int, size: tuple[int, int] = CAMERA) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        base = rng.integers(0, 256, size=(size[1] // 32, size[0] // 32, 3), dtype=np.uint8)
        img = cv2.resize(base, size, interpolation=cv2.INTER_CUBIC)
        img[..., 0] //= 3
        out.append(img)
    return out


def to_msg(rgb: np.ndarray, transport: str) -> Image | CompressedImage:
    if transport == "compressed":
        msg = CompressedImage(format="jpeg")
        msg.data = array.array("B", encode_jpeg(rgb, 90).tobytes())
        return msg
    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
    msg.data = array.array("B", rgb.tobytes())
    return msg


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def segmenter_ms(bundle: Bundle, msgs: list, repeats: int = 1) -> list[float]:
    """The Segmenter alone on the frames the node decodes, in sequence like the node."""
    seg = Segmenter(bundle, backend="onnxruntime")
    decoded = [decode_image(m) for m in msgs]
    seg.segment(decoded[0])  # warm-up
    times = []
    for _ in range(repeats):
        for rgb in decoded:
            t0 = time.perf_counter()
            seg.segment(rgb)
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


class Session:
    """One node process plus this process's participant wired to it."""

    def __init__(self, bundle: Bundle, transport: str, log: Path) -> None:
        self.node = NodeProcess({"bundle": bundle.path, "transport": transport,
                                 "backend": "onnxruntime", "publish_overlay": False}, log)
        self.probe = Probe()
        self.received: list[tuple[int, float]] = []  # (stamp ns, receive time ns)
        self.probe.node.create_subscription(Image, f"/{NODE}/labels", self._on_labels, 10)
        self.diagnostics = self.probe.collect(DiagnosticArray, "/diagnostics")
        msg_type = CompressedImage if transport == "compressed" else Image
        topic = "image/compressed" if transport == "compressed" else "image"
        self.pub = self.probe.node.create_publisher(msg_type, topic, qos_profile_sensor_data)
        self.clock = self.probe.node.get_clock()
        self.probe.spin_until(lambda: self.pub.get_subscription_count() > 0
                              and self.probe.node.count_publishers(f"/{NODE}/labels") > 0,
                              60, "the node")

    def _on_labels(self, msg: Image) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.received.append((stamp, self.clock.now().nanoseconds))

    def send(self, msg) -> int:
        now = self.clock.now()
        msg.header.stamp = now.to_msg()
        self.pub.publish(msg)
        return now.nanoseconds

    def node_status(self) -> dict[str, str]:
        """The node's latest /diagnostics values."""
        for msg in reversed(self.diagnostics):
            for status in msg.status:
                if status.name.startswith(NODE):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self) -> None:
        self.probe.close()
        self.node.stop()


def measure_overhead(bundle: Bundle, transport: str, count: int, workdir: Path) -> dict:
    msgs = [to_msg(f, transport) for f in frames(count)]
    session = Session(bundle, transport, workdir / f"overhead-{transport}.log")
    latencies, lost = [], 0
    try:
        # A few unmeasured frames first: the worker may still be building its session.
        for i, msg in enumerate(msgs[:3] + msgs):
            before = len(session.received)
            stamp = session.send(msg)
            deadline = time.monotonic() + 5.0
            while not any(s == stamp for s, _ in session.received[before:]):
                if time.monotonic() > deadline:
                    lost += i >= 3
                    break
                session.probe.executor.spin_once(timeout_sec=0.05)
            else:
                if i >= 3:
                    latencies.append(next(r - s for s, r in session.received[before:]
                                          if s == stamp) / 1e6)
        session.probe.spin_for(0.5)  # one more diagnostics message
        status = session.node_status()
    finally:
        session.close()
    alone = pct(segmenter_ms(bundle, msgs, repeats=3), 50)
    in_node = float(status.get("inference_p50_ms", "nan"))
    e2e = pct(latencies, 50)
    return {"frames": len(latencies), "lost": lost, "end_to_end_p50_ms": e2e,
            "end_to_end_p95_ms": pct(latencies, 95), "segmenter_alone_p50_ms": alone,
            "overhead_p50_ms": e2e - alone, "overhead_target_ms": OVERHEAD_TARGET_MS,
            "meets_target": e2e - alone <= OVERHEAD_TARGET_MS,
            # the same difference against the Segmenter time the node measured meanwhile
            "node_segmenter_p50_ms": in_node, "overhead_vs_node_segmenter_p50_ms": e2e - in_node}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure_slow(bundle: Bundle, overhead_ms: float, duration: float, workdir: Path) -> dict:
    msgs = [to_msg(f, "compressed") for f in frames(30)]
    alone = pct(segmenter_ms(bundle, msgs[:5], repeats=2), 50)
    session = Session(bundle, "compressed", workdir / "slow.log")
    rss: list[tuple[float, float]] = []
    sent = 0
    try:
        session.probe.spin_for(2.0)  # let the worker build its session
        session.received.clear()
        start = time.monotonic()
        next_frame, next_rss = start, start
        while (now := time.monotonic()) < start + duration:
            if now >= next_frame:
                session.send(msgs[sent % len(msgs)])
                sent += 1
                next_frame += 1.0 / 30.0
            if now >= next_rss:
                rss.append((now - start, rss_mb(session.node.proc.pid)))
                next_rss += 1.0
            session.probe.executor.spin_once(timeout_sec=max(0.0, min(next_frame, next_rss)
                                                             - time.monotonic()))
        status = session.node_status()
    finally:
        session.close()
    latencies = [(r - s) / 1e6 for s, r in session.received]
    first, second = latencies[: len(latencies) // 2], latencies[len(latencies) // 2:]
    # One inference as the node itself measured it under this load: on a shared machine it
    # varies, so the bound is given for its median and, like for like, for its p95.
    inference = float(status.get("inference_p50_ms", "nan"))
    inference_p95 = float(status.get("inference_p95_ms", "nan"))
    bound, bound_p95 = 2.0 * (inference + overhead_ms), 2.0 * (inference_p95 + overhead_ms)
    times, mem = np.array([t for t, _ in rss]), np.array([m for _, m in rss])
    half = times >= times[-1] / 2  # past start-up transients
    slope = float(np.polyfit(times[half], mem[half], 1)[0] * 60.0)
    p95 = pct(latencies, 95)
    return {"duration_s": duration, "camera_hz": 30, "sent": sent, "labels": len(latencies),
            "dropped_by_node": int(status.get("dropped_frames", -1)),
            "segmenter_alone_p50_ms": alone, "node_inference_p50_ms": inference,
            "node_inference_p95_ms": inference_p95, "overhead_ms": overhead_ms,
            "latency_p50_ms": pct(latencies, 50), "latency_p95_ms": p95,
            "latency_p95_first_half_ms": pct(first, 95),
            "latency_p95_second_half_ms": pct(second, 95),
            "bound_ms": bound, "p95_within_bound": p95 <= bound,
            "bound_from_inference_p95_ms": bound_p95,
            "p95_within_bound_from_inference_p95": p95 <= bound_p95,
            "rss_mb_at_half": float(mem[half][0]), "rss_mb_end": float(mem[-1]),
            "rss_mb_max": float(mem.max()), "rss_slope_mb_per_min_second_half": slope,
            "rss_grew_mb_second_half": float(mem[-1] - mem[half][0])}


def _bomb(jpeg: bytes, side: int) -> CompressedImage:
    from tests.support.hostile import jpeg_declaring

    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", jpeg_declaring(jpeg, side, side))
    return msg


def measure_decoding(repeats: int) -> dict:
    """What the header check and a reduced-scale decode cost against a full decode."""
    out: dict = {}
    # (camera frame size, bundle camera size): the node's 640x480 case, and cameras larger than
    # the bundle's camera, where a reduced decode applies.
    for size, camera in (((640, 480), (640, 480)), ((640, 480), (320, 240)),
                         ((1280, 720), (320, 180)), ((1920, 1080), (480, 270))):
        msg = to_msg(frames(1, size)[0], "compressed")
        header = compressed_header(msg)
        reduction = reduction_for(header, Size(*camera))
        entry = {"jpeg_kb": len(msg.data) / 1024, "reduction": reduction,
                 "header_check": time_ms(lambda m=msg: compressed_header(m), repeats * 10),
                 "full_decode": time_ms(lambda m=msg: decode_compressed(m), repeats)}
        if reduction > 1:
            entry["full_decode_and_resize"] = time_ms(
                lambda m=msg, c=camera: cv2.resize(decode_compressed(m), c,
                                                   interpolation=cv2.INTER_AREA), repeats)
            entry["reduced_decode"] = time_ms(
                lambda m=msg, r=reduction: decode_compressed(m, reduction=r), repeats)
            entry["reduced_speedup"] = (entry["full_decode_and_resize"]["median_ms"]
                                        / entry["reduced_decode"]["median_ms"])
        entry["header_share_of_decode"] = (entry["header_check"]["median_ms"]
                                           / entry["full_decode"]["median_ms"])
        out[f"{size[0]}x{size[1]}_for_{camera[0]}x{camera[1]}"] = entry
    bomb = _bomb(bytes(to_msg(frames(1)[0], "compressed").data), 20000)

    def refuse() -> None:
        try:
            decode_compressed(bomb, max_pixels=4 * CAMERA[0] * CAMERA[1])
        except ImageDecodeError:
            return
        raise AssertionError("the bomb was decoded")

    out["refuse_20000x20000_bomb"] = time_ms(refuse, repeats * 10)
    return out


def tiny_bundle(out: Path, network: tuple[int, int]) -> Path:
    from tests.support.bundles import make_tiny_bundle

    return make_tiny_bundle(out, camera=CAMERA, network=network)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, 20 s slow run")
    parser.add_argument("--bundle", type=Path, help="640x480 bundle for the overhead runs")
    parser.add_argument("--slow-bundle", type=Path, help="640x480 bundle with slow inference")
    parser.add_argument("--decode-only", action="store_true", help="only part 3 (no DDS)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    decoding = measure_decoding(10 if args.quick else 50)
    if args.decode_only:
        emit({"decoding": decoding})
        return
    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        work = Path(tmp)
        fast = load_bundle(args.bundle or tiny_bundle(work / "fast", (64, 48)))
        slow = load_bundle(args.slow_bundle or tiny_bundle(work / "slow", (448, 336)))
        count = 30 if args.quick else 100
        result: dict = {"camera": f"{CAMERA[0]}x{CAMERA[1]}", "quick": args.quick,
                        "cpus": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0]}
        for transport in ("raw", "compressed"):
            result[f"overhead_{transport}"] = measure_overhead(fast, transport, count, work)
        # The overhead against the node's own Segmenter time: both measured under the same load.
        result["slow_inference"] = measure_slow(
            slow, result["overhead_compressed"]["overhead_vs_node_segmenter_p50_ms"],
            20.0 if args.quick else 120.0, work)
    result["decoding"] = decoding
    # Every compressed frame now pays the header check inside the measured overhead.
    result["overhead_target_holds"] = all(result[f"overhead_{t}"]["meets_target"]
                                          for t in ("raw", "compressed"))
    emit(result)


if __name__ == "__main__":
    main()
