"""Fixtures for tests that run the segmentation node over a real rclpy / Fast DDS.

Network rule: the discovery variables and a random domain id are set here, at import, before any
participant exists, and are inherited by the node subprocesses. Run the suite through
``tools/run_isolated.sh`` to add a private network namespace on top.
"""

from __future__ import annotations

import os
import random
import socket

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bundles import make_tiny_bundle
from uwstego.bundle import Bundle, load_bundle

from ros_harness import CAMERA, NODE_NAME, PACKAGE_DIR, NodeProcess, Probe

# The node's own modules are unit-tested in this process without installing the package.
if str(PACKAGE_DIR) not in sys.path:
    sys.path.insert(0, str(PACKAGE_DIR))


def pytest_report_header(config: pytest.Config) -> str:
    interfaces = sorted(name for _, name in socket.if_nameindex())
    isolated = interfaces == ["lo"]
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, discovery LOCALHOST, network "
            f"namespace: {'private (lo only)' if isolated else 'shared ' + str(interfaces)}")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("ros_bundle") / "bundle",
                                        camera=CAMERA))


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(bundle: Bundle | Path | None, name: str = NODE_NAME, namespace: str = "",
              **params: Any) -> NodeProcess:
        """Start the node on ``bundle`` (None: without the parameter) with ``params``."""
        if bundle is not None:
            params["bundle"] = getattr(bundle, "path", bundle)
        params = {"diagnostics_period": 0.2, **params}
        node = NodeProcess(params, tmp_path / f"{name}-{len(started)}.log", name, namespace)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    try:
        yield p
    finally:
        p.close()
