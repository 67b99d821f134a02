"""SIGINT and SIGTERM at several points of the node's start-up and life: always a clean exit with
EXIT_STOPPED (0) and one line naming the signal and what the node was doing, never a traceback
or a failed start (uwstego_ros/stopping.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState

from ros_harness import NodeProcess

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
CONFIGURING = "configuring: bundle"  # logged by on_configure just before the backend is built
CONFIGURED = "configured in"


def _wait_for(node: NodeProcess, text: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.output():
        assert node.alive() and time.monotonic() < deadline, \
            f"no {text!r} in the log:\n{node.output()}"
        time.sleep(0.002)


def _signal_while_configuring(node: NodeProcess, sig: int) -> bool:
    """Freeze the process as soon as it logs that it builds the backend, check that it had not
    finished, then deliver ``sig`` and let it go on: the signal lands inside configure. False
    (nothing sent) when configure had already finished: the log can reach us after the fact."""
    _wait_for(node, CONFIGURING)
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.3)  # what the process wrote before it was frozen reaches node.output()
        if CONFIGURED in node.output():
            return False
        os.kill(node.proc.pid, sig)
        return True
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)


def _configuring_node(start: Callable[[], NodeProcess], sig: int, tries: int = 3) -> NodeProcess:
    """A node that received ``sig`` inside configure; on a machine where configure outran the
    freeze, a fresh node is tried again."""
    for _ in range(tries):
        node = start()
        if _signal_while_configuring(node, sig):
            return node
        node.proc.kill()
        node.proc.wait()
    pytest.skip(f"configure finished before the process could be frozen, {tries} times")


def _assert_stopped(node: NodeProcess, sig: int, state: str) -> None:
    rc = node.wait(TIMEOUT)
    text = node.output()
    name = signal.Signals(sig).name
    assert rc == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "cannot start" not in text, text
    lines = [line for line in text.splitlines() if f"stopped by {name}" in line]
    assert len(lines) == 1 and f"while {state}" in lines[0], text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_modules_load(sig, bundle, start_node):
    node = start_node(bundle, backend="onnxruntime")
    time.sleep(0.3)
    assert CONFIGURING not in node.output(), "the process started too fast to test this"
    node.proc.send_signal(sig)
    _assert_stopped(node, sig, "starting")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_autostart_configures(sig, bundle, start_node):
    node = _configuring_node(lambda: start_node(bundle, backend="onnxruntime"), sig)
    _assert_stopped(node, sig, "configuring")
    assert "the backend was still being built" in node.output()


def test_sigterm_while_a_lifecycle_manager_configures(bundle, start_node, probe):
    # configure runs on an executor thread here, not in the main thread
    attempt = iter(range(100))

    def start() -> NodeProcess:
        name = f"seg_managed{next(attempt)}"
        node = start_node(bundle, name=name, backend="onnxruntime", autostart=False)
        client = probe.node.create_client(ChangeState, f"/{name}/change_state")
        probe.spin_until(client.service_is_ready, TIMEOUT, "the lifecycle service")
        client.call_async(ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        return node

    node = _configuring_node(start, signal.SIGTERM)
    _assert_stopped(node, signal.SIGTERM, "configuring")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_running(sig, bundle, start_node):
    node = start_node(bundle, backend="onnxruntime")
    _wait_for(node, "active: segmenting")
    node.proc.send_signal(sig)
    _assert_stopped(node, sig, "active")
