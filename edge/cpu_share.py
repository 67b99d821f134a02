"""How the CPU is shared with the model: its threads first, everything else in their gaps.

ONNX Runtime runs the graph on one thread per core (its ``threads``). The replay's reader
(decoding), writer (overlays, output bag, figures) and video encoder are other threads of the
same process; at the same priority they take cores from the model in the middle of its
parallel GEMMs and every frame's inference slows by a quarter or more (docs/deploy.md
§11). Lowered, they run when the model's threads wait, and the queues between the
stages make the model wait for them only when they fall behind, so throughput is kept and each
frame's inference takes as long as it does alone.

OpenCV's own thread pool busy-waits for a while after each parallel call (a resize, a colour
conversion), at normal priority, on the very cores ONNX Runtime then needs: measured, it cost a
full replay about a tenth of its inference speed even with every stage lowered. So while the
model runs on the CPU, OpenCV runs on the thread that calls it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import cv2

log = logging.getLogger(__name__)

# Linux niceness of the stages around the model: 19 is the lowest priority, taken because they
# must never delay a frame's inference; they still get every core the model leaves idle.
BACKGROUND_NICE = 19


def run_in_background() -> None:
    """Lower the calling thread's CPU priority to :data:`BACKGROUND_NICE`.

    Linux only, where niceness is per thread (threads it starts, e.g. an encoder's, inherit it);
    elsewhere it would lower the whole process, model included, so it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except OSError as exc:  # a sandbox may forbid it: slower inference, nothing worse
        log.debug("cannot lower the priority of thread %s: %s", threading.current_thread().name,
                  exc)


def keep_opencv_off_the_model() -> None:
    """Make OpenCV single-threaded (process-wide): the model runs on the CPU's cores."""
    if cv2.getNumThreads() != 1:
        log.debug("OpenCV runs single-threaded: ONNX Runtime has the cores")
        cv2.setNumThreads(1)
