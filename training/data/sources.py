"""Where training frames come from: image folders, video files and rosbag2 recordings.

Every source yields :class:`Frame` objects in a fixed, repeatable order (so a feature-cache build
can resume), each with a :class:`FrameRef` that is enough to read the same frame again later.

Sequences: a video file, or one image topic of a bag, is a *sequence*; a still image is a
sequence of one. Sources yield every decodable frame of a sequence, flagged ``keep`` when the
frame sampling (stride or rate) selects it: the enhancement's temporal statistics must see the
frames the vehicle saw, not only the sampled ones (see :mod:`uwstego.training.data.crops`).

Nothing is dropped silently: every unreadable file or frame is recorded in a :class:`ReadReport`
(counted, listed, and logged), and :func:`check_not_empty` stops a run that found no usable frame.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import cv2
import numpy as np

from uwstego.bags import ReadStats, choose_camera_topic, open_bag
from uwstego.contract import (
    COMPRESSED_TOPIC,
    IMAGE_SUFFIXES,
    IMAGE_TOPIC,
    SYNTH_BAG_DIR,
    SYNTH_DIVE_FILE,
    SYNTH_IMAGES_DIR,
    VIDEO_SUFFIXES,
)
from uwstego.errors import UwstegoError
from uwstego.rosimage import ImageDecodeError, decode_compressed

logger = logging.getLogger(__name__)



class EmptyDatasetError(UwstegoError, ValueError):
    """The sources hold no usable frame."""


@dataclass(frozen=True)
class FrameRef:
    """Provenance of one frame: enough to read it again and to tell near-duplicates apart."""

    kind: str                 # "image" | "video" | "bag"
    path: str
    index: int = 0            # frame number in the video / message number on the topic
    topic: str | None = None
    t_ns: int | None = None   # bag log time

    @property
    def sequence(self) -> str:
        """Frames sharing this key form one stream (temporal enhancement state, neighbours)."""
        return f"{self.path}#{self.topic}" if self.topic else self.path

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameRef:
        return cls(**data)


@dataclass
class Frame:
    ref: FrameRef
    rgb: np.ndarray  # HxWx3 uint8
    keep: bool = True


@dataclass
class ReadReport:
    """What a pass over the sources found: frames seen and kept, and every item skipped."""

    seen: int = 0
    kept: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append({"item": item, "reason": reason})
        logger.warning("skipped %s: %s", item, reason)

    def log_summary(self) -> None:
        logger.info("read %d frames, kept %d, skipped %d unreadable items", self.seen, self.kept,
                    len(self.skipped))
        for entry in self.skipped:
            logger.info("  skipped %s: %s", entry["item"], entry["reason"])

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "kept": self.kept, "skipped": list(self.skipped)}


class Source(Protocol):
    def frames(self, report: ReadReport) -> Iterator[Frame]: ...

    def describe(self) -> dict[str, Any]: ...


class Sampler:
    """Keeps every ``stride``-th frame, or (with ``rate_hz``) the first frame of each period."""

    def __init__(self, stride: int = 1, rate_hz: float | None = None) -> None:
        if stride < 1:
            raise ValueError(f"frame stride must be >= 1, got {stride}")
        if rate_hz is not None and not rate_hz > 0:
            raise ValueError(f"frame rate must be > 0 Hz, got {rate_hz}")
        self.stride, self.rate_hz = stride, rate_hz
        self._t0: float | None = None
        self._bucket = -1

    def keep(self, index: int, t_s: float | None) -> bool:
        if self.rate_hz is None or t_s is None:
            return index % self.stride == 0
        if self._t0 is None:
            self._t0 = t_s
        bucket = math.floor((t_s - self._t0) * self.rate_hz + 1e-6)
        if bucket == self._bucket:
            return False
        self._bucket = bucket
        return True


def decode_image_file(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; the bytes decode exactly like a CompressedImage."""
    data = np.fromfile(path, dtype=np.uint8)
    return decode_compressed(SimpleNamespace(format=path.suffix.lstrip("."), data=data))


@dataclass(frozen=True)
class ImageFolder:
    """Every image file under ``root`` (recursive), in sorted path order."""

    root: Path

    def __post_init__(self) -> None:
        # Absolute, so provenance still points at the files from another working directory.
        object.__setattr__(self, "root", Path(self.root).resolve())

    def paths(self) -> list[Path]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        return sorted(p for p in self.root.rglob("*")
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def frames(self, report: ReadReport) -> Iterator[Frame]:
        paths = self.paths()
        self._log_subfolders(paths)
        for path in paths:
            report.seen += 1
            try:
                rgb = decode_image_file(path)
            except (ImageDecodeError, OSError) as exc:
                report.skip(str(path), str(exc))
                continue
            yield Frame(FrameRef("image", str(path)), rgb)

    def _log_subfolders(self, paths: Sequence[Path]) -> None:
        # Every image under the folder is taken: say from where, so that a folder of masks or
        # depth maps next to the photos shows up in the log.
        counts = Counter(str(p.parent.relative_to(self.root)) for p in paths)
        if len(counts) > 1:
            logger.info("%s: %d images, by subfolder: %s", self.root, len(paths),
                        ", ".join(f"{'(top)' if d == '.' else d + '/'} {n}"
                                  for d, n in sorted(counts.items())))
        else:
            logger.info("%s: %d images", self.root, len(paths))

    def describe(self) -> dict[str, Any]:
        return {"kind": "images", "path": str(self.root)}


def synth_dive_source(path: Path, *, stride: int = 1, rate_hz: float | None = None,
                      topic: str | None = None) -> Source:
    """A folder written by ``uwstego synth``: its camera frames only, never labels/ or range/.

    The PNG folder ``images/`` when it is there, else the bag's camera topic (the one the dive
    wrote, raw or compressed, as ``dive.json`` says), so ground-truth label images are skipped.
    """
    images, bag = path / SYNTH_IMAGES_DIR, path / SYNTH_BAG_DIR
    if images.is_dir():
        logger.info("%s is a synthetic dive: training on its camera images %s/ only", path,
                    SYNTH_IMAGES_DIR)
        return ImageFolder(images)
    if (bag / "metadata.yaml").is_file():
        if topic is None:
            try:
                outputs = json.loads((path / SYNTH_DIVE_FILE).read_text()).get("outputs", {})
            except (OSError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path / SYNTH_DIVE_FILE} is unreadable ({exc}): pass --topic "
                                 "to choose the camera topic of its bag") from exc
            topic = COMPRESSED_TOPIC if outputs.get("compressed") else IMAGE_TOPIC
        logger.info("%s is a synthetic dive: training on topic %s of its %s/", path, topic,
                    SYNTH_BAG_DIR)
        return RosBag(bag, topic, stride, rate_hz)
    raise ValueError(f"{path} holds {SYNTH_DIVE_FILE} but neither {SYNTH_IMAGES_DIR}/ nor a "
                     f"rosbag2 in {SYNTH_BAG_DIR}/: an unfinished synth run? Rerun uwstego synth")


def _open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ValueError("cannot be opened as a video (unknown codec or corrupt file)")
    return cap


@dataclass(frozen=True)
class VideoFile:
    """Frames of one video, sampled by ``stride`` or by ``rate_hz`` (frame times from its fps)."""

    path: Path
    stride: int = 1
    rate_hz: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).resolve())
        Sampler(self.stride, self.rate_hz)  # validates the sampling arguments early

    def frames(self, report: ReadReport) -> Iterator[Frame]:
        try:
            cap = _open_video(self.path)
        except ValueError as exc:
            report.seen += 1
            report.skip(str(self.path), str(exc))
            return
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if self.rate_hz is not None and not fps > 0:
                logger.warning("%s reports no frame rate; sampling every %d frames instead of "
                               "%.3g Hz", self.path, self.stride, self.rate_hz)
            sampler = Sampler(self.stride, self.rate_hz if fps > 0 else None)
            index = 0
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                report.seen += 1
                keep = sampler.keep(index, index / fps if fps > 0 else None)
                yield Frame(FrameRef("video", str(self.path), index),
                            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), keep)
                index += 1
        finally:
            cap.release()
        if expected > index:
            report.skip(f"{self.path} frames {index}..{expected - 1}",
                        f"video ended after {index} of {expected} frames (truncated or corrupt)")

    def describe(self) -> dict[str, Any]:
        return {"kind": "video", "path": str(self.path), "stride": self.stride,
                "rate_hz": self.rate_hz}


@dataclass(frozen=True)
class RosBag:
    """The camera topic of a bag (MCAP or sqlite3, or a synth dive folder's ``bag/``), read
    through :func:`uwstego.bags.open_bag`: past damage, which is reported per topic.

    ``topic=None`` takes the bag's camera topic by the rule of :mod:`uwstego.bags.topics` (never
    ground truth; several cameras stop with a message listing them)."""

    path: Path
    topic: str | None = None
    stride: int = 1
    rate_hz: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).resolve())
        Sampler(self.stride, self.rate_hz)

    def frames(self, report: ReadReport) -> Iterator[Frame]:
        try:
            bag = open_bag(self.path)
        except (OSError, ValueError) as exc:
            report.seen += 1
            report.skip(str(self.path), f"unreadable bag: {exc}")
            return
        if not bag.image_topics:
            report.skip(str(self.path), "the bag has no sensor_msgs Image or CompressedImage "
                                        "topic")
            return
        topic = choose_camera_topic(bag, self.topic)
        stats = ReadStats()
        sampler = Sampler(self.stride, self.rate_hz)
        for count, msg in enumerate(bag.images(topic, stats=stats)):
            report.seen += 1
            keep = sampler.keep(count, msg.t_ns / 1e9)
            yield Frame(FrameRef("bag", str(bag.path), msg.index, topic, msg.t_ns), msg.rgb, keep)
        report.seen += stats.skipped
        for reason, n in sorted(stats.reasons.items()):
            report.skip(f"{bag.path}#{topic}", f"{n} frame(s): {reason}")
        for problem in bag.damage:
            report.skip(f"{bag.path}#{topic}", f"damaged bag: {problem}")

    def describe(self) -> dict[str, Any]:
        return {"kind": "bag", "path": str(self.path), "topic": self.topic,
                "stride": self.stride, "rate_hz": self.rate_hz}


def source_from_path(path: str | Path, *, stride: int = 1, rate_hz: float | None = None,
                     topic: str | None = None) -> Source:
    """Pick the source type from what is at ``path`` (bag folder, image folder or video)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data source {path} does not exist")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return RosBag(path, topic, stride, rate_hz)
        if (path / SYNTH_DIVE_FILE).is_file():
            return synth_dive_source(path, stride=stride, rate_hz=rate_hz, topic=topic)
        return ImageFolder(path)
    if path.suffix.lower() == ".bag":
        return RosBag(path, topic, stride, rate_hz)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoFile(path, stride, rate_hz)
    raise ValueError(f"{path}: not an image folder, a video ({sorted(VIDEO_SUFFIXES)}) or a "
                     "rosbag2 folder (the folder holding metadata.yaml)")


def as_sources(items: Iterable[Source | str | Path] | Source | str | Path) -> list[Source]:
    """Sources from source objects and/or paths (see :func:`source_from_path`)."""
    if isinstance(items, (str, Path)) or not isinstance(items, Iterable):
        items = [items]
    sources = [source_from_path(i) if isinstance(i, (str, Path)) else i for i in items]
    if not sources:
        raise EmptyDatasetError("no data sources given")
    return sources


def iter_frames(sources: Sequence[Source], report: ReadReport) -> Iterator[Frame]:
    """Every frame of every source, in order; ``report`` counts what was kept and skipped."""
    for source in sources:
        for frame in source.frames(report):
            report.kept += frame.keep
            yield frame


def check_not_empty(report: ReadReport, sources: Sequence[Source]) -> None:
    if report.kept:
        return
    where = ", ".join(str(s.describe()["path"]) for s in sources)
    if report.skipped:
        first = "; ".join(f"{e['item']}: {e['reason']}" for e in report.skipped[:3])
        more = " ..." if len(report.skipped) > 3 else ""
        raise EmptyDatasetError(f"no usable frame in {where}: all {len(report.skipped)} items "
                                f"found were unreadable ({first}{more})")
    raise EmptyDatasetError(f"no frames found in {where}: expected image files "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}), videos or rosbag2 folders")


def read_frame(ref: FrameRef) -> np.ndarray:
    """Read the frame ``ref`` points at again (for galleries), as HxWx3 uint8 RGB."""
    path = Path(ref.path)
    if ref.kind == "image":
        return decode_image_file(path)
    if ref.kind == "video":
        cap = _open_video(path)
        try:
            # Seek, then walk forward: codecs that cannot seek exactly land before the frame.
            cap.set(cv2.CAP_PROP_POS_FRAMES, ref.index)
            position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if position > ref.index or position < 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                position = 0
            for _ in range(ref.index - position):
                cap.grab()
            ok, bgr = cap.read()
        finally:
            cap.release()
        if not ok:
            raise ValueError(f"{path}: frame {ref.index} can no longer be read")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if ref.kind == "bag":
        if ref.topic is None or ref.t_ns is None:
            raise ValueError(f"bag frame reference without topic or time: {ref}")
        for msg in open_bag(path).images(ref.topic, start_ns=ref.t_ns, stop_ns=ref.t_ns + 1):
            return msg.rgb
        raise ValueError(f"{path}: no {ref.topic} frame at t={ref.t_ns} ns any more")
    raise ValueError(f"unknown frame kind {ref.kind!r}")
