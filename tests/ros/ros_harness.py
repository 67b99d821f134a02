"""The pieces of the ROS tests: the node as a subprocess and the test's own participant.

Import it only after conftest.py has set the discovery variables (conftest imports it).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from uwstego.contract import NODE_NAME

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "ros2_ws" / "src" / "uwstego_ros"
CAMERA = (64, 48)


def isolate_script() -> None:
    """For scripts that start DDS (the benchmarks): re-run this one under
    tools/run_isolated.sh unless only loopback is visible, then confine discovery to this
    machine with a random domain id, as conftest.py does for the tests."""
    only_loopback = [name for _, name in socket.if_nameindex()] == ["lo"]
    if not only_loopback and not os.environ.get("UWSTEGO_BENCH_ISOLATED"):
        os.environ["UWSTEGO_BENCH_ISOLATED"] = "1"
        runner = str(REPO / "tools" / "run_isolated.sh")
        os.execv(runner, [runner, sys.executable, *sys.argv])
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))


class NodeProcess:
    """The segmentation node in its own process, started the way the vehicle starts it."""

    def __init__(self, params: dict[str, Any], log_path: Path, name: str = NODE_NAME,
                 namespace: str = "", command: list[str] | None = None,
                 python_path: Path = PACKAGE_DIR, env: dict[str, str] | None = None) -> None:
        """``command`` (default: the package's module from the source tree) is started with
        ``python_path`` ahead of PYTHONPATH and ``env`` on top of this process's environment."""
        self.name = name
        self.log_path = log_path
        command = command or [sys.executable, "-m", "uwstego_ros"]
        args = [*command, "--ros-args", "-r", f"__node:={name}"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(python_path),
                                                          env.get("PYTHONPATH")]))
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=REPO)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def stop(self) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class Probe:
    """The test's own ROS participant: publishers, collecting subscribers and a spin helper."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("uwstego_test_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def collect(self, msg_type: type, topic: str, qos: Any = 10) -> list:
        inbox: list = []
        self.node.create_subscription(msg_type, topic, inbox.append, qos)
        return inbox

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Lifecycle:
    """A client of one node's lifecycle services (``lifecycle_msgs``)."""

    def __init__(self, probe: Probe, node: str, timeout: float = 60.0,
                 process: NodeProcess | None = None) -> None:
        """``process``: the node's process, so that a call fails at once when it died."""
        self.probe = probe
        self.timeout = timeout
        self.process = process
        self.change = probe.node.create_client(ChangeState, f"/{node}/change_state")
        self.get = probe.node.create_client(GetState, f"/{node}/get_state")
        self.available = probe.node.create_client(GetAvailableTransitions,
                                                  f"/{node}/get_available_transitions")
        for client in (self.change, self.get, self.available):
            probe.spin_until(client.service_is_ready, timeout, f"{client.srv_name}")

    def _call(self, client, request):
        future = client.call_async(request)
        process = self.process
        self.probe.spin_until(lambda: future.done() or (process is not None
                                                         and not process.alive()),
                              self.timeout, f"{client.srv_name}")
        if not future.done():
            raise AssertionError(f"{client.srv_name}: the node died:\n{process.output()}")
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transitions(self) -> set[str]:
        reply = self._call(self.available, GetAvailableTransitions.Request())
        return {t.transition.label for t in reply.available_transitions}

    def trigger(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(
            transition=Transition(id=transition_id))).success


class Flood:
    """A camera in a thread of this process, with its own participant: publishes ``make(i)`` at
    ``rate`` Hz on ``topic`` until stopped, whatever the test's own participant is doing."""

    def __init__(self, msg_type: type, topic: str, make: Callable[[int], Any], rate: float,
                 qos: Any = 10) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("uwstego_test_camera", context=self.context)
        self.publisher = self.node.create_publisher(msg_type, topic, qos)
        self.sent = 0
        self._make = make
        self._period = 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.publisher.publish(self._make(self.sent))
            self.sent += 1
            next_at += self._period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
