"""The Segmenter: one camera stream in, class labels, confidence (and novelty) out, any backend.

Per frame: optional BGR->RGB, resize to the bundle's camera size when the frame differs, the
host enhancement stage (stateful per stream), the fused graph on the backend, and the labels
resized back to the frame size (nearest, so class ids stay class ids).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from uwstego.backends import CPU_BACKEND, BackendChoice, BackendOptions, create_backend
from uwstego.bundle import Bundle, load_bundle
from uwstego.contract import UNKNOWN_LABEL
from uwstego.cpu_share import keep_opencv_off_the_model
from uwstego.enhance import Enhancer, check_rgb_frame
from uwstego.image_size import Size
from uwstego.novelty import unknown_mask

log = logging.getLogger(__name__)

TIMING_KEYS = ("preprocess", "enhance", "inference", "postprocess", "total")


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # uint8 HxW class index, at the input frame's size
    confidence: np.ndarray  # float32 HxW max cosine similarity to the centroids
    timings_ms: dict[str, float]  # TIMING_KEYS
    backend: str
    resized: bool  # the frame was not at the bundle's camera size
    # float32 HxW in [0, 1] (edge/novelty.py); None when the bundle has no novelty calibration
    novelty: np.ndarray | None = None
    # bool HxW: pixels beyond their cluster's novelty threshold (labelled UNKNOWN_LABEL in
    # bundles exported with the unknown label); None without calibration
    unknown: np.ndarray | None = None

    @property
    def novel_fraction(self) -> float | None:
        """Fraction of the frame beyond its clusters' thresholds; None without calibration."""
        return None if self.unknown is None else float(np.count_nonzero(self.unknown)
                                                        / max(self.unknown.size, 1))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Segmenter:
    """Segment frames of one stream with a bundle's fused graph.

    Not thread-safe, and GPU backends keep their CUDA context on the thread that built them:
    create and use a Segmenter on one thread.
    """

    def __init__(self, bundle: Bundle | str | Path, backend: str = "auto",
                 precision: str = "fp16", cache_dir: str | Path | None = None,
                 threads: int = 0, cpu_graph: str = "auto") -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        options = BackendOptions(precision=precision,
                                 cache_dir=Path(cache_dir) if cache_dir else None,
                                 threads=threads, cpu_graph=cpu_graph)
        self.choice: BackendChoice = create_backend(backend, self.bundle, options)
        if self.choice.backend.name == CPU_BACKEND:
            keep_opencv_off_the_model()
        self.enhancer = Enhancer(self.bundle.meta.enhancement)
        self.camera_size: Size = self.bundle.meta.camera
        self._last_resized: Size | None = None

    @property
    def backend_name(self) -> str:
        return self.choice.backend.name

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.bundle.meta.classes]

    def describe(self) -> dict[str, Any]:
        info = dict(self.choice.backend.describe())
        info.update(requested=self.choice.requested, camera=str(self.camera_size),
                    classes=len(self.bundle.meta.classes))
        if self.choice.skipped:
            info["skipped"] = dict(self.choice.skipped)
        return info

    def close(self) -> None:
        """Release the backend; call it on the thread that segmented (CUDA contexts)."""
        self.choice.backend.close()

    def reset(self) -> None:
        """Forget the temporal enhancement state: call between unrelated streams or images."""
        self.enhancer.reset()

    def segment(self, frame: np.ndarray, bgr: bool = False) -> Segmentation:
        t_start = time.perf_counter()
        # OpenCV refuses views with negative or padded strides (frame[..., ::-1], crops).
        frame = np.ascontiguousarray(check_rgb_frame(frame))
        size = Size.of(frame)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr else frame
        resized = size != self.camera_size
        if resized:
            if size != self._last_resized:
                self._last_resized = size
                log.info("frames of %s are resized to the bundle's camera size %s", size,
                         self.camera_size)
            shrink = size.pixels > self.camera_size.pixels
            rgb = cv2.resize(rgb, self.camera_size.dsize,
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        timings = {"preprocess": _ms(t_start)}

        t0 = time.perf_counter()
        image, params = self.enhancer.host_stage(rgb)
        timings["enhance"] = _ms(t0)

        t0 = time.perf_counter()
        labels, confidence, novelty = self.choice.backend.run_maps(image, params)
        timings["inference"] = _ms(t0)

        t0 = time.perf_counter()
        if resized:
            labels = cv2.resize(labels, size.dsize, interpolation=cv2.INTER_NEAREST)
            confidence = cv2.resize(confidence, size.dsize, interpolation=cv2.INTER_LINEAR)
            if novelty is not None:
                novelty = cv2.resize(novelty, size.dsize, interpolation=cv2.INTER_LINEAR)
        meta = self.bundle.meta
        unknown = None
        if meta.novelty is not None:
            unknown = (labels == UNKNOWN_LABEL if meta.unknown_label
                       else unknown_mask(confidence, labels, meta.novelty))
        timings["postprocess"] = _ms(t0)
        timings["total"] = _ms(t_start)
        return Segmentation(labels=labels, confidence=confidence, timings_ms=timings,
                            backend=self.backend_name, resized=resized, novelty=novelty,
                            unknown=unknown)
