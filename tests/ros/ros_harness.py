"""The pieces of the ROS tests: the node as a subprocess and the test's own participant.

Import it only after conftest.py has set the discovery variables (conftest imports it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from edge.contract import NODE_NAME

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "ros2_ws" / "src" / "uwstego_ros"
CAMERA = (64, 48)


class NodeProcess:
    """The segmentation node in its own process, started the way the vehicle starts it."""

    def __init__(self, params: dict[str, Any], log_path: Path, name: str = NODE_NAME,
                 namespace: str = "", command: list[str] | None = None,
                 python_path: Path = PACKAGE_DIR, env: dict[str, str] | None = None) -> None:
        """``command`` (default: the package's module from the source tree) is started with
        ``python_path`` ahead of PYTHONPATH and ``env`` on top of this process's environment."""
        self.name = name
        self.log_path = log_path
        command = command or [sys.executable, "-m", "uwstego_ros.node"]
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
