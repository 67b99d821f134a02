"""Soak of the node's lifecycle under a streaming camera, through real DDS.

A raw camera floods the node (200 Hz by default) from a thread of this process while the node is
deactivated and activated again through its ``lifecycle_msgs`` services, ``--cycles`` times; every
``--swap-every`` cycles the model is swapped instead (deactivate, set ``bundle``, cleanup,
configure, activate). After each activation the first labels of a frame sent after it must equal
what the Segmenter computes in this process with the bundle in force. Reports whether the node
survived, the cycles and swaps done, the transitions' round trips, wrong labels and the node's
memory before and after.

    python benchmarks/bench_node_lifecycle.py [--quick] [--cycles N] [--rate HZ]
        [--camera WxH] [--package DIR] [--trials N]

``--package DIR`` runs another checkout's ``uwstego_ros`` (e.g. an older commit's
``ros2_ws/src/uwstego_ros``) through ``python -m uwstego_ros.node``, to measure a before/after;
``--trials`` repeats the soak with a fresh node each time. Prints one JSON object. The bundles
are tiny random-weight exports (needs the `export` extra), so only survival, transition times and
label agreement mean anything, not the labels themselves. Runs itself in a private network
namespace when it can.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "ros"))
from ros_harness import isolate_script  # noqa: E402

isolate_script()

import array  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from tests.support.bundles import make_tiny_bundle  # noqa: E402
from uwstego.bundle import load_bundle  # noqa: E402
from uwstego.enhance import EnhanceSettings  # noqa: E402
from uwstego.segmenter import Segmenter  # noqa: E402

from ros_harness import Flood, Lifecycle, NodeProcess, Probe  # noqa: E402
from timing import emit  # noqa: E402

NODE = "seg_soak"
TIMEOUT = 60.0


def camera_frame(size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
    return cv2.resize(base, size, interpolation=cv2.INTER_LINEAR)


def raw(rgb: np.ndarray, i: int) -> Image:
    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
    msg.data = array.array("B", rgb.tobytes())
    msg.header.stamp.sec = i  # the flood's frame number: labels say which frame they belong to
    return msg


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0  # the process is gone


def set_bundle(probe: Probe, path: str) -> bool:
    client = probe.node.create_client(SetParameters, f"/{NODE}/set_parameters")
    probe.spin_until(client.service_is_ready, TIMEOUT, "the parameter service")
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=path)
    future = client.call_async(SetParameters.Request(
        parameters=[ParameterMsg(name="bundle", value=value)]))
    probe.spin_until(future.done, TIMEOUT, "setting bundle")
    return future.result().results[0].successful


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def soak(args: argparse.Namespace, bundles: list[str], references: dict[str, np.ndarray],
         frame: np.ndarray, log: Path) -> dict:
    command = [sys.executable, "-m", "uwstego_ros.node"] if args.package else None
    params = {"bundle": bundles[0], "transport": "raw", "backend": "onnxruntime",
              "diagnostics_period": 0.5}
    kwargs = {"python_path": args.package} if args.package else {}
    node = NodeProcess(params, log, NODE, command=command, **kwargs)
    probe = Probe()
    labels: list = probe.collect(Image, f"/{NODE}/labels", qos_profile_sensor_data)
    flood = None
    cycles = swaps = wrong = 0
    round_trips: list[float] = []
    current = bundles[0]
    error = ""
    rss_start = rss_end = None
    try:
        life = Lifecycle(probe, NODE, TIMEOUT, node)
        flood = Flood(Image, "image", lambda i: raw(frame, i), args.rate,
                      qos_profile_sensor_data)
        started = time.monotonic()
        for cycle in range(args.cycles):
            since = flood.sent
            probe.spin_until(lambda s=since: any(m.header.stamp.sec >= s for m in labels)
                             or not node.alive(), TIMEOUT, f"labels after activation {cycle}")
            if not node.alive():
                break
            fresh = next(m for m in labels if m.header.stamp.sec >= since)
            got = np.frombuffer(bytes(fresh.data), np.uint8).reshape(fresh.height, fresh.width)
            wrong += not np.array_equal(got, references[current])
            if cycle == 0:
                rss_start = rss_mb(node.proc.pid)
            steps = [Transition.TRANSITION_DEACTIVATE]
            swap = cycle % args.swap_every == args.swap_every - 1
            if swap:
                current = bundles[(bundles.index(current) + 1) % len(bundles)]
                steps += ["bundle", Transition.TRANSITION_CLEANUP,
                          Transition.TRANSITION_CONFIGURE]
            steps.append(Transition.TRANSITION_ACTIVATE)
            for step in steps:
                t0 = time.perf_counter()
                ok = set_bundle(probe, current) if step == "bundle" else life.trigger(step)
                if step != "bundle":
                    round_trips.append((time.perf_counter() - t0) * 1e3)
                if not ok:
                    raise RuntimeError(f"cycle {cycle}: step {step} refused")
            labels.clear()
            cycles += 1
            swaps += swap
        seconds = time.monotonic() - started
        rss_end = rss_mb(node.proc.pid) if node.alive() else None
    except (AssertionError, RuntimeError) as exc:
        error = str(exc).splitlines()[0]
        seconds = None
    finally:
        flood_sent = flood.sent if flood is not None else 0
        if flood is not None:
            flood.close()
        alive = node.alive()
        node.stop()
        probe.close()
    text = log.read_text(errors="replace")
    crash = next((line for line in reversed(text.splitlines())
                  if "Error" in line or "Invalid" in line), "")
    return {"survived": alive and not error and cycles == args.cycles, "cycles": cycles,
            "swaps": swaps, "wrong_labels": wrong, "seconds": seconds,
            "frames_sent": flood_sent, "flood_hz": flood_sent / seconds if seconds else None,
            "transition_p50_ms": pct(round_trips, 50),
            "transition_p95_ms": pct(round_trips, 95),
            "rss_mb_start": rss_start, "rss_mb_end": rss_end,
            "error": crash if not alive else error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 cycles (CI smoke)")
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--swap-every", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="camera rate (Hz)")
    parser.add_argument("--camera", default="160x120", help="raw rgb8 frame size WxH")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--package", type=Path, help="another uwstego_ros source folder")
    args = parser.parse_args()
    if args.quick:
        args.cycles = min(args.cycles, 40)
    size = tuple(int(v) for v in args.camera.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_node_lifecycle_") as tmp:
        work = Path(tmp)
        bundles = [str(make_tiny_bundle(work / "a", camera=size)),
                   str(make_tiny_bundle(work / "b", camera=size, seed=1, k=4,
                                        enhancement=EnhanceSettings.raw()))]
        frame = camera_frame(size)
        references = {b: Segmenter(load_bundle(b), backend="onnxruntime").segment(frame).labels
                      for b in bundles}
        trials = [soak(args, bundles, references, frame, work / f"node-{t}.log")
                  for t in range(args.trials)]
    emit({"camera": args.camera, "rate_hz": args.rate, "cycles_asked": args.cycles,
          "swap_every": args.swap_every, "package": str(args.package or "this checkout"),
          "cpus": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0],
          "trials_survived": sum(t["survived"] for t in trials), "trials": trials})


if __name__ == "__main__":
    main()
