"""The frames pretraining draws crops from: every kept frame of the sources, through the
enhancement chain the head and the vehicle use, resized once and cached in ``OUT/frames.npy``.

Random crops need random access, and decoding videos and bags for every step would dominate a
CPU run, so the enhanced frames are decoded once (the enhancement's EMA runs over each stream
in recording order, :func:`uwstego.training.data.crops.enhance_params`). All frames share one size:
the
first frame's aspect with its short side ``frame_size``. A cache built from other sources or
settings is rebuilt, never reused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from uwstego.atomic import atomic_path, write_json_atomic
from uwstego.enhance import EnhanceSettings
from uwstego.training import distributed as ddp
from uwstego.training.data.crops import enhance_params, render, to_uint8
from uwstego.training.data.sources import ReadReport, Source, check_not_empty, iter_frames
from uwstego.training.data.totals import total_frames

log = logging.getLogger(__name__)

FRAMES_FILE = "frames.npy"
FRAMES_META = "frames.json"


def frame_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _key(sources: Sequence[Source], enhancement: EnhanceSettings, short_side: int
         ) -> dict[str, Any]:
    return {"sources": [s.describe() for s in sources], "enhancement": enhancement.to_dict(),
            "short_side": short_side}


def _build(sources: Sequence[Source], enhancement: EnhanceSettings, short_side: int,
           path: Path, progress: bool) -> ReadReport:
    report = ReadReport()
    rows: list[np.ndarray] = []
    shape: tuple[int, int] | None = None
    stretched = 0
    bar = tqdm(total=total_frames(sources), desc="frames", unit="frame", disable=not progress,
               dynamic_ncols=True)
    for frame, params in enhance_params(iter_frames(sources, report), enhancement):
        img = to_uint8(render(frame.rgb, params, enhancement))
        h, w = img.shape[:2]
        if shape is None:
            shape = frame_shape(h, w, short_side)
        elif abs(w / h - shape[1] / shape[0]) > 0.02:
            stretched += 1
        interp = cv2.INTER_AREA if h > shape[0] else cv2.INTER_CUBIC
        rows.append(cv2.resize(img, (shape[1], shape[0]), interpolation=interp))
        bar.update(1)
    bar.close()
    report.log_summary()
    check_not_empty(report, sources)
    if stretched:
        log.warning("%d frames have another aspect ratio than the first one and were resized "
                    "to %dx%d anyway", stretched, shape[1], shape[0])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.stack(rows))
    return report


def load_frames(sources: Sequence[Source], enhancement: EnhanceSettings, short_side: int,
                out_dir: Path, progress: bool = True) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 enhanced frames (memory-mapped); rank 0 builds, others wait."""
    path, meta_path = out_dir / FRAMES_FILE, out_dir / FRAMES_META
    key = _key(sources, enhancement, short_side)
    info = ddp.dist_info()
    if info.is_main:
        current = None
        if meta_path.is_file() and path.is_file():
            try:
                current = json.loads(meta_path.read_text()).get("key")
            except ValueError:
                current = None
        if current != key:
            meta_path.unlink(missing_ok=True)
            report = _build(sources, enhancement, short_side, path, progress)
            write_json_atomic(meta_path, {"key": key, "read": report.to_dict()})
        else:
            log.info("reusing the frame cache %s", path)
    ddp.barrier()
    frames = np.load(path, mmap_mode="r")
    log.info("%d frames of %dx%d px to crop from", len(frames), frames.shape[2], frames.shape[1])
    return frames
