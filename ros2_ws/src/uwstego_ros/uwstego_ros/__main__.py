"""The node's process: ``python -m uwstego_ros --ros-args ...`` or the ``segmentation_node``
console script.

The signal handlers go in before anything heavy is imported, so that SIGINT or SIGTERM while the
modules load ends the process with ``EXIT_STOPPED`` and one line, not a ``KeyboardInterrupt``
traceback (``uwstego_ros/stopping.py``).
"""

from __future__ import annotations

import sys

from uwstego_ros.stopping import exit_on_signals


def main() -> int:
    exit_on_signals()
    from uwstego_ros.node import main as run_node

    return run_node()


if __name__ == "__main__":
    sys.exit(main())
