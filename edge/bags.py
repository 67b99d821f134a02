"""Read image topics from rosbag2/rosbag1 recordings and write rosbag2 bags, with ``rosbags``.

Reading goes through ``AnyReader`` with the Humble typestore as the fallback, so bags recorded
on the vehicle by Humble (metadata v5, no embedded message definitions) read like new ones; MCAP
and sqlite3 storage both work. Stored messages come out as CDR (rosbag1 messages are converted),
so they can be copied into a rosbag2 byte for byte. A bag that cannot be opened or read (damaged
metadata.yaml, unreadable storage) raises a ValueError naming the bag and the problem. A frame
that cannot be deserialised or decoded is skipped, logged and counted in a ``ReadStats``; it
never ends the iteration.

Writing always uses metadata version 8, which Humble's tools parse. ``BagWriter`` builds the bag
in a temporary sibling folder and renames it into place when it closes. If the ``with`` block
raises (including Ctrl-C), the bag is still closed properly and renamed into place holding every
message written so far: a partial recording is a valid, shorter bag, kept and reported rather
than thrown away. A bag never appears at its final path half-written.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import apsw
import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag1 import ReaderError as Reader1Error
from rosbags.rosbag2 import ReaderError as Reader2Error
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from edge.coverage import coverage_dimension
from edge.rosimage import ImageDecodeError, decode_image, encode_jpeg

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
FLOAT32_ARRAY_TYPE = "std_msgs/msg/Float32MultiArray"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# What rosbags (and the sqlite3 library under it) raise for a bag it cannot open or read on.
_READ_ERRORS = (AnyReaderError, Reader1Error, Reader2Error, apsw.Error)
# encoding -> (array ndim, channels, dtype) accepted by BagWriter.write_image
_WRITE_LAYOUTS = {
    "rgb8": (3, 3, np.uint8), "bgr8": (3, 3, np.uint8),
    "rgba8": (3, 4, np.uint8), "bgra8": (3, 4, np.uint8),
    "mono8": (2, 1, np.uint8), "mono16": (2, 1, np.uint16), "32FC1": (2, 1, np.float32),
}


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The Humble typestore: its Image, CompressedImage and CameraInfo match newer distros."""
    return get_typestore(Stores.ROS2_HUMBLE)


@dataclass(frozen=True)
class RawMessage:
    """One stored message, still serialised (CDR)."""

    topic: str
    msgtype: str
    t_ns: int  # log (receive) time
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class BagImage:
    index: int          # position on the topic within [start_ns, stop_ns), counting bad frames
    t_ns: int           # log (receive) time
    stamp_ns: int       # header stamp
    frame_id: str
    rgb: np.ndarray = field(repr=False)  # HxWx3 uint8, owned by the caller
    msgtype: str = IMAGE_TYPE
    # The stored message's CDR, only when asked for (``keep_raw``): it doubles the memory.
    raw: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BagInfo:
    """What a bag's index says, read in one opening (see :func:`bag_info`)."""

    path: Path
    topics: dict[str, str]  # topic -> message type
    counts: dict[str, int]  # topic -> messages
    start_ns: int           # first message's log time (0 for an empty bag)
    duration_ns: int        # from the first message to just after the last (0 if empty)
    storage: str            # "mcap", "sqlite3" or "rosbag1"

    @property
    def image_topics(self) -> dict[str, str]:
        return {t: m for t, m in self.topics.items() if m in IMAGE_TYPES}


@dataclass
class ReadStats:
    """What ``iter_bag_images`` did: pass one in and read it during or after the iteration."""

    read: int = 0
    yielded: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def skip(self, index: int, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] += 1
        log.warning("skipping frame %d: %s", index, reason)


def _unreadable(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"{path} is not a readable rosbag2 folder or rosbag1 file: {exc}")


def _open_reader(bag_path: str | Path) -> AnyReader:
    """An open reader (close it); a ValueError naming the bag and the problem if it won't open."""
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        raise ValueError(f"{path} is not a readable rosbag2 folder: it has no metadata.yaml "
                         "(an interrupted recording can be repaired with `ros2 bag reindex`)")
    if path.is_file() and path.suffix != ".bag":
        raise ValueError(f"{path} is a file; pass the rosbag2 folder that holds it and its "
                         "metadata.yaml")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    return reader


def _storage(path: Path) -> str:
    if path.is_file():
        return "rosbag1"
    # metadata.yaml has been read (and checked) by rosbags already, which does not expose this.
    meta = yaml.safe_load((path / "metadata.yaml").read_text())
    return str(meta["rosbag2_bagfile_information"]["storage_identifier"])


def bag_info(bag_path: str | Path) -> BagInfo:
    """Topics, message counts, time span and storage of a bag, from its index (one opening)."""
    reader = _open_reader(bag_path)
    try:
        topics: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for conn in reader.connections:
            topics.setdefault(conn.topic, conn.msgtype)
            counts[conn.topic] += conn.msgcount
        empty = not sum(counts.values())
        path = Path(bag_path)
        return BagInfo(path=path, topics=dict(sorted(topics.items())), counts=dict(counts),
                       start_ns=0 if empty else reader.start_time,
                       duration_ns=0 if empty else reader.duration, storage=_storage(path))
    finally:
        reader.close()


def list_image_topics(bag_path: str | Path) -> dict[str, str]:
    """Topic -> message type for every Image and CompressedImage topic in the bag."""
    return bag_info(bag_path).image_topics


def topic_message_counts(bag_path: str | Path) -> dict[str, int]:
    """Messages per topic, from the bag's index (no message is read)."""
    return bag_info(bag_path).counts


def _messages(path: Path, reader: AnyReader, topics: Collection[str] | None,
              start_ns: int | None, stop_ns: int | None) -> Iterator[RawMessage]:
    """The messages of an open reader as CDR; closes the reader when done."""
    count = 0
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:  # rosbags reads every connection when given none
            return
        if not reader.is2 and (unknown := {c.msgtype for c in conns} - set(typestore().types)):
            raise ValueError(f"{path}: rosbag1 messages of type {', '.join(sorted(unknown))} "
                             "cannot be converted to ROS 2 (CDR)")
        for conn, t_ns, data in reader.messages(connections=conns, start=start_ns, stop=stop_ns):
            if not reader.is2:  # the ROS 2 store converts ROS 1 headers (it drops ``seq``)
                data = typestore().ros1_to_cdr(data, conn.msgtype)
            count += 1
            yield RawMessage(conn.topic, conn.msgtype, t_ns, bytes(data))
    except _READ_ERRORS as exc:
        raise ValueError(f"{path}: reading failed after {count} messages: {exc}") from exc
    finally:
        reader.close()


def iter_bag_messages(bag_path: str | Path, topics: Collection[str] | None = None,
                      start_ns: int | None = None,
                      stop_ns: int | None = None) -> Iterator[RawMessage]:
    """The stored messages of ``topics`` (all if None) with log time in [start_ns, stop_ns),
    in log-time order, as CDR. A bag that fails part-way raises a ValueError saying so."""
    path = Path(bag_path)
    yield from _messages(path, _open_reader(path), topics, start_ns, stop_ns)


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def decode_bag_image(msg: RawMessage, index: int, stats: ReadStats,
                     keep_raw: bool = False) -> BagImage | None:
    """The frame in a stored Image or CompressedImage, or None (skipped, counted in ``stats``)."""
    stats.read += 1
    try:
        ros = typestore().deserialize_cdr(msg.data, msg.msgtype)
    except Exception as exc:  # any malformed CDR must only skip its frame
        stats.skip(index, f"undeserialisable message: {type(exc).__name__}: {exc}")
        return None
    try:
        rgb = decode_image(ros)
    except ImageDecodeError as exc:
        stats.skip(index, str(exc))
        return None
    stats.yielded += 1
    return BagImage(index=index, t_ns=msg.t_ns, stamp_ns=_stamp_ns(ros.header),
                    frame_id=str(ros.header.frame_id), rgb=rgb, msgtype=msg.msgtype,
                    raw=msg.data if keep_raw else None)


def describe_topics(topics: dict[str, str]) -> str:
    """``/a (Image), /b (CompressedImage)``, for error messages."""
    return ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"


def iter_bag_images(bag_path: str | Path, topic: str, every: int = 1,
                    start_ns: int | None = None, stop_ns: int | None = None,
                    stats: ReadStats | None = None, keep_raw: bool = False) -> Iterator[BagImage]:
    """Yield every ``every``-th frame of an image topic with log time in [start_ns, stop_ns).

    Frames that fail to deserialise or decode are skipped and counted in ``stats``. With
    ``keep_raw`` each frame also carries its stored message (``BagImage.raw``).
    Raises ValueError naming the bag's image topics when ``topic`` is not one of them, and
    naming the bag and the problem when it cannot be read.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    stats = stats if stats is not None else ReadStats()
    path = Path(bag_path)
    reader = _open_reader(path)
    topics = {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
    if topic not in topics:
        reader.close()
        raise ValueError(f"topic {topic!r} is not an image topic of {path}; image "
                         f"topics: {describe_topics(topics)}")
    for index, msg in enumerate(_messages(path, reader, (topic,), start_ns, stop_ns)):
        if index % every:
            continue
        image = decode_bag_image(msg, index, stats, keep_raw)
        if image is not None:
            yield image


class BagWriter:
    """Write a rosbag2 (metadata version 8); connections are added on first use of a topic.

    Use as a context manager. See the module text for what happens when the block raises.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in _STORAGES:
            raise ValueError(f"storage must be one of {sorted(_STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.store = typestore()
        self._staging: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[tuple[str, str], Connection] = {}
        self.count = 0

    def __enter__(self) -> BagWriter:
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} exists already; remove it or choose another "
                                  "path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial",
                                              dir=self.path.parent))
        # The bag keeps its final name inside the staging folder, so its storage file is named
        # after the final path too.
        self._writer = Writer(self._staging / self.path.name, version=8,
                              storage_plugin=_STORAGES[self.storage])
        self._writer.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._writer is not None and self._staging is not None
        try:
            self._writer.close()
        except BaseException:
            log.error("could not close bag %s; the partial files stay in %s", self.path,
                      self._staging)
            self._writer.abort()
            raise
        os.rename(self._staging / self.path.name, self.path)
        shutil.rmtree(self._staging, ignore_errors=True)
        if exc_type is not None:
            log.warning("bag %s kept with the %d messages written before %s", self.path,
                        self.count, exc_type.__name__)

    def write_raw(self, topic: str, t_ns: int, msgtype: str, data: bytes,
                  store: Typestore | None = None) -> None:
        """Write an already serialised (CDR) message unchanged, e.g. one copied from another bag.

        ``store`` (default ``self.store``) supplies the message definition of ``msgtype`` that
        the bag records with the topic.
        """
        if self._writer is None:
            raise RuntimeError("BagWriter is not open; use it as a context manager")
        key = (topic, msgtype)
        conn = self._connections.get(key)
        if conn is None:
            store = store or self.store
            if msgtype not in store.types:
                raise ValueError(f"cannot write {topic}: message type {msgtype!r} is not in the "
                                 "typestore")
            conn = self._writer.add_connection(topic, msgtype, typestore=store)
            self._connections[key] = conn
        self._writer.write(conn, int(t_ns), data)
        self.count += 1

    def write_message(self, topic: str, t_ns: int, msgtype: str, msg: Any) -> None:
        """Serialise and write any message of the typestore (``self.store``)."""
        self.write_raw(topic, t_ns, msgtype, self.store.serialize_cdr(msg, msgtype))

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """A ``std_msgs/Header`` of the typestore."""
        types = self.store.types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
            frame_id=frame_id)

    def write_image(self, topic: str, t_ns: int, image: np.ndarray, encoding: str = "rgb8",
                    stamp_ns: int | None = None, frame_id: str = "camera") -> None:
        """Write ``image``, already laid out as ``encoding`` (HxWx3 rgb8, HxW mono8, 32FC1, ...)."""
        if encoding not in _WRITE_LAYOUTS:
            raise ValueError(f"write_image supports encodings {sorted(_WRITE_LAYOUTS)}, got "
                             f"{encoding!r}")
        ndim, channels, dtype = _WRITE_LAYOUTS[encoding]
        if image.ndim != ndim or image.dtype != dtype or (ndim == 3 and image.shape[2] != channels):
            layout = f"HxWx{channels}" if ndim == 3 else "HxW"
            raise ValueError(f"{encoding} needs a {np.dtype(dtype).name} array of {layout}, got "
                             f"{image.dtype} {image.shape}")
        height, width = image.shape[:2]
        data = np.ascontiguousarray(image).astype(np.dtype(dtype).newbyteorder("<"), copy=False)
        msg = self.store.types[IMAGE_TYPE](
            header=self.header(t_ns if stamp_ns is None else stamp_ns, frame_id),
            height=height, width=width, encoding=encoding, is_bigendian=0,
            step=width * channels * data.itemsize, data=data.reshape(-1).view(np.uint8))
        self.write_message(topic, t_ns, IMAGE_TYPE, msg)

    def write_compressed(self, topic: str, t_ns: int, rgb: np.ndarray,
                         stamp_ns: int | None = None, frame_id: str = "camera",
                         quality: int = 90) -> None:
        """JPEG-encode an HxWx3 RGB (or HxW grey) image and write a CompressedImage."""
        msg = self.store.types[COMPRESSED_TYPE](
            header=self.header(t_ns if stamp_ns is None else stamp_ns, frame_id),
            format="jpeg", data=encode_jpeg(rgb, quality))
        self.write_message(topic, t_ns, COMPRESSED_TYPE, msg)

    def write_camera_info(self, topic: str, t_ns: int, width: int, height: int,
                          K: Sequence[float] | np.ndarray, stamp_ns: int | None = None,
                          frame_id: str = "camera") -> None:
        """A pinhole CameraInfo without distortion (plumb_bob, zero D) from the 3x3 matrix K."""
        k = np.asarray(K, dtype=np.float64).reshape(3, 3)
        p = np.zeros((3, 4))
        p[:, :3] = k
        types = self.store.types
        msg = types[CAMERA_INFO_TYPE](
            header=self.header(t_ns if stamp_ns is None else stamp_ns, frame_id),
            height=int(height), width=int(width), distortion_model="plumb_bob",
            d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1),
            binning_x=0, binning_y=0,
            roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                          width=0, do_rectify=False))
        self.write_message(topic, t_ns, CAMERA_INFO_TYPE, msg)

    def write_coverage(self, topic: str, t_ns: int, values: Sequence[float] | np.ndarray,
                       class_names: Sequence[str]) -> None:
        """Per-class figures as a Float32MultiArray laid out as the node's ``~/coverage``."""
        data = np.asarray(values, dtype=np.float32).reshape(-1)
        if len(class_names) != data.size:
            raise ValueError(f"{data.size} values but {len(class_names)} class names")
        types = self.store.types
        dim = types["std_msgs/msg/MultiArrayDimension"](**coverage_dimension(class_names))
        msg = types[FLOAT32_ARRAY_TYPE](
            layout=types["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0), data=data)
        self.write_message(topic, t_ns, FLOAT32_ARRAY_TYPE, msg)
