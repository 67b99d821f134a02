"""Write a synthetic dive to disk: PNG folders, a rosbag2, or both, resumably.

Output folder::

    settings.json        the DiveSettings (a later run with other settings is refused)
    frames.jsonl         one JSON line of parameters per frame written to the folders
    dive.json            camera, world, classes, per-segment conditions, every frame's
                         parameters and ``complete``; rewritten at the end, even after an error
    images/NNNNNN.png    RGB frames              (folders)
    labels/NNNNNN.png    uint8 class indices     (folders; 255 = ignore)
    range/NNNNNN.png     uint16 range in mm, 0 = open water (folders, unless disabled)
    bag/                 rosbag2: /camera/image_raw (rgb8) or /camera/image_raw/compressed,
                         /camera/camera_info, /camera/labels_gt (mono8), /nav/odom and, with
                         a navigation origin, /nav/fix (training/synth/navigation.py)   (bag)

Frames are pure functions of the settings, so a rerun into the same folder only renders what
is missing from the folders. A bag cannot be appended to: an incomplete one (kept by an
interrupted run) is replaced by a full rewrite. One run writes a folder at a time
(:func:`uwstego.writer_lock.claim`); it first removes the temporary files that a killed run into
the same folder left.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
from tqdm import tqdm

from uwstego.atomic import remove_leftovers, write_bytes_atomic, write_json_atomic
from uwstego.bags import BagWriter, open_bag
from uwstego.classes import classes_to_list
from uwstego.contract import (
    CAMERA_INFO_TOPIC,
    COMPRESSED_TOPIC,
    IMAGE_TOPIC,
    LABELS_GT_TOPIC,
    SYNTH_BAG_DIR,
    SYNTH_DIVE_FILE,
    SYNTH_IMAGES_DIR,
)
from uwstego.disk_full import naming
from uwstego.training.synth.classes import CLASS_NAMES, CLASSES, IGNORE
from uwstego.training.synth.navigation import NavigationWriter
from uwstego.training.synth.sequence import Dive, SynthFrame
from uwstego.training.synth.settings import DiveSettings, read_dive_settings
from uwstego.writer_lock import claim

log = logging.getLogger(__name__)

FRAME_ID = "camera"


@dataclass(frozen=True)
class WriteReport:
    out: Path
    rendered: int          # frames generated in this run
    reused: int            # frames already in the folders from an earlier run
    bag: Path | None
    complete: bool
    seconds: float


def _name(index: int) -> str:
    return f"{index:06d}.png"


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {image.shape}")
    return buf.tobytes()


def range_to_mm(range_m: np.ndarray) -> np.ndarray:
    """Range map -> uint16 millimetres; 0 marks open water (infinite range)."""
    mm = np.where(np.isfinite(range_m), np.rint(range_m * 1000), 0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def _frame_dirs(save_range: bool) -> list[str]:
    return [SYNTH_IMAGES_DIR, "labels"] + (["range"] if save_range else [])


def _frame_files(out: Path, index: int, save_range: bool) -> list[Path]:
    return [out / d / _name(index) for d in _frame_dirs(save_range)]


def _remove_leftovers(out: Path) -> None:
    """The temporary files of a killed run into ``out`` (its frames and JSON files)."""
    remove_leftovers(out, "*.json")
    for folder in _frame_dirs(save_range=True):
        remove_leftovers(out / folder, "*.png")


def _write_folders(out: Path, frame: SynthFrame, save_range: bool) -> None:
    paths = _frame_files(out, frame.index, save_range)
    write_bytes_atomic(paths[0], _png(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)))
    write_bytes_atomic(paths[1], _png(frame.labels))
    if save_range:
        write_bytes_atomic(paths[2], _png(range_to_mm(frame.range_m)))


def _write_bag_frame(bag: BagWriter, dive: Dive, frame: SynthFrame, compressed: bool,
                     quality: int) -> None:
    t = frame.t_ns
    if compressed:
        bag.write_compressed(COMPRESSED_TOPIC, t, frame.rgb, t, FRAME_ID, quality)
    else:
        bag.write_image(IMAGE_TOPIC, t, frame.rgb, "rgb8", t, FRAME_ID)
    bag.write_camera_info(CAMERA_INFO_TOPIC, t, dive.camera.width, dive.camera.height,
                          dive.camera.K, t, FRAME_ID)
    bag.write_image(LABELS_GT_TOPIC, t, frame.labels, "mono8", t, FRAME_ID)


def _claim(out: Path, settings: DiveSettings) -> None:
    """Record the settings, or check that the folder holds this very dive."""
    path = out / "settings.json"
    wanted = json.loads(json.dumps(settings.to_dict()))
    if path.exists():
        found = json.loads(json.dumps(read_dive_settings(path).to_dict()))
        if found != wanted:
            changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise ValueError(f"{out} holds a dive with other settings ({', '.join(changed)}); "
                             "choose another output folder")
    else:
        write_json_atomic(path, wanted)


def _load_params(path: Path) -> dict[int, dict[str, Any]]:
    params: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the last line of an interrupted run
                continue
            params[int(entry["index"])] = entry
    return params


def _bag_is_complete(bag_dir: Path, frames: int) -> bool:
    """Whether an earlier run left a bag holding every frame's labels."""
    try:
        found = open_bag(bag_dir)
    except (ValueError, OSError):  # unreadable leftovers are rewritten
        return False
    return not found.damage and (found.counts or {}).get(LABELS_GT_TOPIC) == frames


def _already_done(out: Path, frames: int, folders: bool, bag: bool, save_range: bool) -> bool:
    """A finished earlier run (same settings, see _claim) whose outputs are all still there."""
    path = out / SYNTH_DIVE_FILE
    if not path.exists() or not json.loads(path.read_text()).get("complete"):
        return False
    if folders and not all(p.exists() for i in range(frames)
                           for p in _frame_files(out, i, save_range)):
        return False
    return not bag or _bag_is_complete(out / SYNTH_BAG_DIR, frames)


def write_dive(settings: DiveSettings, out: str | Path, *, folders: bool = True,
               bag: bool = False, storage: str = "mcap", compressed: bool = False,
               quality: int = 90, save_range: bool = True,
               progress: bool = False) -> WriteReport:
    """Render the dive into ``out`` (see the module text); returns what was done."""
    if not (folders or bag):
        raise ValueError("nothing to write: enable folders, bag or both")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    out = Path(out)
    with claim(out), naming(out):
        out.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out)
        return _write(settings, out, folders, bag, storage, compressed, quality, save_range,
                      progress)


def _write(settings: DiveSettings, out: Path, folders: bool, bag: bool, storage: str,
           compressed: bool, quality: int, save_range: bool, progress: bool) -> WriteReport:
    started = time.perf_counter()
    _claim(out, settings)
    if _already_done(out, settings.frames, folders, bag, save_range):
        log.info("%s already holds this complete dive", out)
        return WriteReport(out=out, rendered=0, reused=settings.frames,
                           bag=out / SYNTH_BAG_DIR if bag else None, complete=True,
                           seconds=round(time.perf_counter() - started, 3))
    dive = Dive(settings)
    frames_log = out / "frames.jsonl"
    params = _load_params(frames_log) if folders else {}
    done = {i for i in params if all(p.exists() for p in _frame_files(out, i, save_range))}
    reused = len(done)
    bag_dir = out / SYNTH_BAG_DIR
    need_bag = bag and not (bag_dir.exists() and _bag_is_complete(bag_dir, settings.frames))
    if need_bag and bag_dir.exists():
        log.warning("replacing the incomplete bag %s of an earlier run", bag_dir)
        shutil.rmtree(bag_dir)
    # Frames to render: all for a new bag, else those missing from the folders or whose
    # parameters are unknown (a complete bag-only output re-renders just for dive.json).
    todo = [i for i in range(settings.frames)
            if need_bag or (folders and i not in done) or i not in params]
    rendered = 0
    bag_finished = not need_bag
    try:
        with ExitStack() as stack:
            # The label topic is marked in the bag, so that no reader takes it for the camera.
            writer = stack.enter_context(BagWriter(bag_dir, storage,
                                                   label_topics=(LABELS_GT_TOPIC,))) \
                if need_bag else None
            if writer is not None:  # the report names the ground truth's classes from these
                writer.set_class_names({LABELS_GT_TOPIC: CLASS_NAMES})
            navigation = NavigationWriter(writer, dive) if writer is not None else None
            log_file: TextIO | None = (stack.enter_context(frames_log.open("a"))
                                       if folders else None)
            for index in tqdm(todo, desc="synth", unit="frame", disable=not progress):
                frame = dive.frame(index)
                rendered += 1
                if log_file is not None and index not in done:
                    _write_folders(out, frame, save_range)
                    log_file.write(json.dumps(frame.params) + "\n")
                    log_file.flush()
                    done.add(index)
                params[index] = frame.params
                if navigation is not None:
                    navigation.until(frame.t_ns)
                if writer is not None:
                    _write_bag_frame(writer, dive, frame, compressed, quality)
            if navigation is not None:
                navigation.until()
            bag_finished = True
    finally:
        complete = (bag_finished and len(params) == settings.frames
                    and (not folders or len(done) == settings.frames))
        summary = dive.describe()
        summary.update({
            "classes": classes_to_list(CLASSES), "ignore_index": IGNORE,
            "outputs": {"folders": folders, "bag": bag, "storage": storage,
                        "compressed": compressed, "range": save_range},
            "complete": complete, "frames": [params[i] for i in sorted(params)]})
        write_json_atomic(out / SYNTH_DIVE_FILE, summary)
        if not complete:
            log.warning("dive in %s is incomplete: %d of %d frames; rerun to finish", out,
                        len(done) if folders else len(params), settings.frames)
    return WriteReport(out=out, rendered=rendered, reused=reused,
                       bag=bag_dir if bag else None, complete=complete,
                       seconds=round(time.perf_counter() - started, 3))
