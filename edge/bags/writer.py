"""Write rosbag2 bags (metadata version 8, which Humble's tools parse) that are never half there.

``BagWriter`` builds the bag in a hidden staging folder next to its final path and renames it into
place when it closes. If the ``with`` block raises (including Ctrl-C), the bag is still closed
properly and renamed into place holding every message written so far: a partial recording is a
valid, shorter bag, kept and reported. A block that fails before its first message, or a bag
that cannot be closed (a full disk), leaves nothing at the path, so that the rerun is not
refused: the staging folder is removed before anything else that could fail on a full disk, and
a full disk is one line, "no space left on PATH" (:class:`uwstego.disk_full.DiskFull`). One writer
writes a path at a time (:func:`uwstego.writer_lock.claim`): a second is refused while the first
writes, so no finished bag can be stranded in a staging folder. A run killed outright leaves
only its staging folder; the next writer of the same path removes it and says so in the log
(its storage was never finished: a killed sqlite3 writer has committed nothing).

The writer may be opened on one thread and written and closed from another (replay writes from
its own thread): every call holds one lock, and the sqlite3 connection is opened to allow that.

Every topic carries real ``offered_qos_profiles`` in the YAML form Humble's ``ros2 bag play``
reads (integer policy values, durations as ``sec``/``nsec``): the profile of the input topic
where one is copied (``offered_qos``), the sensor-data profile (best effort, keep last 5) for
camera topics, and the default reliable keep-last-10 profile otherwise. MCAP chunks carry the
CRC32 of their records (rosbags writes 0, "not stored"), so that readers can tell a damaged chunk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.interfaces import (
    Connection,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.metadata import parse_qos
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys.store import Typestore

from uwstego.bags.layout import CLASS_NAMES_KEY, LABEL_TOPICS_KEY
from uwstego.bags.messages import (
    CAMERA_INFO_TYPE,
    CAMERA_TYPES,
    COMPRESSED_TYPE,
    FLOAT32_ARRAY_TYPE,
    IMAGE_TYPE,
    typestore,
)
from uwstego.coverage import coverage_dimension
from uwstego.disk_full import naming
from uwstego.rosimage import encode_jpeg
from uwstego.writer_lock import claim, remove_abandoned

log = logging.getLogger(__name__)

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_STAGING_SUFFIX = ".partial"
# encoding -> (array ndim, channels, dtype) accepted by BagWriter.write_image
_WRITE_LAYOUTS = {
    "rgb8": (3, 3, np.uint8), "bgr8": (3, 3, np.uint8),
    "rgba8": (3, 4, np.uint8), "bgra8": (3, 4, np.uint8),
    "mono8": (2, 1, np.uint8), "mono16": (2, 1, np.uint16), "32FC1": (2, 1, np.float32),
}
_ZERO = QosTime(0, 0)  # rmw's "default" duration: no deadline, lifespan or lease
# rmw_qos_profile_sensor_data and rmw_qos_profile_default, as rclcpp publishers offer them.
SENSOR_DATA_QOS = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE,
                      _ZERO, _ZERO, QosLiveliness.SYSTEM_DEFAULT, _ZERO, False)
DEFAULT_QOS = Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
                  _ZERO, _ZERO, QosLiveliness.SYSTEM_DEFAULT, _ZERO, False)
# The MCAP chunk record: opcode, length, start and end time, uncompressed size, then the CRC.
_CHUNK_CRC_AT = 1 + 8 + 8 + 8 + 8


def qos_profile(reliability: str, depth: int) -> Qos:
    """A keep-last, volatile profile (``"reliable"`` or ``"best_effort"``), e.g. the node's."""
    policy = QosReliability.RELIABLE if reliability == "reliable" else QosReliability.BEST_EFFORT
    return DEFAULT_QOS._replace(reliability=policy, depth=depth)


class _CrcMcapWriter(McapWriter):
    """rosbags' MCAP storage, with each chunk's CRC32 filled in once the chunk is written."""

    def close_chunk(self) -> None:
        crc = zlib.crc32(self.chunk.bio.getbuffer())
        start = self.bio.tell()
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(start + _CHUNK_CRC_AT)
        self.bio.write(struct.pack("<I", crc))
        self.bio.seek(end)


class _SharedSqlite3Writer(Sqlite3Writer):
    """rosbags' sqlite3 storage on a connection any thread may use (BagWriter serialises)."""

    def __init__(self, path: Path, compression: CompressionMode) -> None:
        self.path = path / f"{path.name}.db3"
        self.conn = sqlite3.connect(f"file:{self.path}", uri=True, check_same_thread=False)
        self.conn.executescript(self.SQLITE_SCHEMA)
        self.cursor = self.conn.cursor()


_PLUGINS = {StoragePlugin.MCAP: _CrcMcapWriter, StoragePlugin.SQLITE3: _SharedSqlite3Writer}


def _discard(writer: Writer | None, staging: Path) -> None:
    """Remove an unfinished bag: the folder first, since on a full disk closing the storage
    fails too (it flushes what it buffered)."""
    shutil.rmtree(staging, ignore_errors=True)
    if writer is not None:
        with contextlib.suppress(Exception):  # the storage is gone already; only handles close
            writer.abort()


class BagWriter:
    """Write a rosbag2; connections are added on first use of a topic. Use as a context manager.

    ``offered_qos`` maps topics (or namespaces, written with a trailing ``/``) to the
    ``offered_qos_profiles`` YAML to record for them, e.g. those of the bag a topic is copied
    from; ``label_topics`` are recorded in the bag's metadata as ground truth, so that no reader
    takes them for a camera (:attr:`uwstego.bags.Bag.label_topics`). See the module text for the
    rest.
    """

    def __init__(self, path: str | Path, storage: str = "mcap",
                 offered_qos: Mapping[str, str | Sequence[Qos]] | None = None,
                 label_topics: Collection[str] = ()) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.store = typestore()
        self.offered_qos = dict(offered_qos or {})
        self.label_topics = tuple(label_topics)
        self._staging: Path | None = None
        self._writer: Writer | None = None
        self._claim: contextlib.ExitStack | None = None
        self._connections: dict[tuple[str, str], Connection] = {}
        self._lock = threading.RLock()
        self.count = 0

    def __enter__(self) -> BagWriter:
        held = contextlib.ExitStack()
        held.enter_context(claim(self.path))
        try:
            remove_abandoned(self.path, _STAGING_SUFFIX)
            if self.path.exists():
                raise FileExistsError(f"bag {self.path} exists already; remove it or choose "
                                      "another path")
            with naming(self.path):
                self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.",
                                                      suffix=_STAGING_SUFFIX,
                                                      dir=self.path.parent))
                self._writer = self._open(self._staging)
        except BaseException:
            if self._staging is not None:
                _discard(self._writer, self._staging)
            self._staging = self._writer = None
            held.close()
            raise
        self._claim = held
        return self

    def _open(self, staging: Path) -> Writer:
        # The bag keeps its final name inside the staging folder, so its storage file is named
        # after the final path too.
        writer = Writer(staging / self.path.name, version=8,
                        storage_plugin=STORAGES[self.storage])
        writer.STORAGE_PLUGINS = _PLUGINS  # type: ignore[misc]
        if self.label_topics:
            writer.set_custom_data(LABEL_TOPICS_KEY, ",".join(self.label_topics))
        writer.open()
        return writer

    def set_class_names(self, names_by_topic: Mapping[str, Sequence[str]]) -> None:
        """Record the class names of label topics (``[name of id 0, ...]`` per topic) in the
        bag's metadata, written when it closes (:attr:`uwstego.bags.Bag.class_names`)."""
        with self._lock:
            if self._writer is None:
                raise RuntimeError("BagWriter is not open; use it as a context manager")
            self._writer.set_custom_data(CLASS_NAMES_KEY, json.dumps(
                {topic: list(names) for topic, names in names_by_topic.items()}))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            writer, staging, held = self._writer, self._staging, self._claim
            assert writer is not None and staging is not None and held is not None
            self._writer = self._staging = self._claim = None
            with held:
                if exc_type is not None and not self.count:
                    _discard(writer, staging)
                    log.warning("no bag written at %s: %s before its first message", self.path,
                                exc_type.__name__)
                    return
                try:
                    with naming(self.path):
                        writer.close()
                        os.rename(staging / self.path.name, self.path)
                except BaseException:
                    _discard(writer, staging)
                    log.warning("could not close bag %s; nothing is written there", self.path)
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        if exc_type is not None:
            log.warning("bag %s kept with the %d messages written before %s", self.path,
                        self.count, exc_type.__name__)

    def _qos(self, topic: str, msgtype: str) -> list[Qos]:
        profile: str | Sequence[Qos] | None = self.offered_qos.get(topic)
        if profile is None:
            spaces = [k for k in self.offered_qos if k.endswith("/") and topic.startswith(k)]
            if spaces:
                profile = self.offered_qos[max(spaces, key=len)]
        if isinstance(profile, str):
            try:
                parsed = parse_qos(profile) if profile.strip() else []
            except Exception:  # an input bag's profile we cannot parse is not copied
                log.warning("%s: offered_qos_profiles of the input cannot be parsed; recording "
                            "the default profile instead", topic)
                parsed = []
            if parsed:
                return parsed
        elif profile:
            return list(profile)
        return [SENSOR_DATA_QOS if msgtype in CAMERA_TYPES else DEFAULT_QOS]

    def write_raw(self, topic: str, t_ns: int, msgtype: str, data: bytes,
                  store: Typestore | None = None) -> None:
        """Write an already serialised (CDR) message unchanged, e.g. one copied from another bag.

        ``store`` (default ``self.store``) supplies the message definition of ``msgtype`` that
        the bag records with the topic.
        """
        with self._lock:
            if self._writer is None:
                raise RuntimeError("BagWriter is not open; use it as a context manager")
            key = (topic, msgtype)
            conn = self._connections.get(key)
            if conn is None:
                store = store or self.store
                if msgtype not in store.types:
                    raise ValueError(f"cannot write {topic}: message type {msgtype!r} is not in "
                                     "the typestore")
                conn = self._writer.add_connection(topic, msgtype, typestore=store,
                                                   offered_qos_profiles=self._qos(topic, msgtype))
                self._connections[key] = conn
            with naming(self.path):
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
