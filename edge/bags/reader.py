"""Read a whole bag strictly, through ``rosbags``: its index, or a ValueError on any damage.

Reading goes through ``AnyReader`` with the Humble typestore as the fallback, so bags recorded
on the vehicle by Humble (metadata v5, no embedded message definitions) read like new ones; MCAP
and sqlite3 storage and rosbag1 files all work. Stored messages come out as CDR (rosbag1 messages
are converted), so they can be copied into a rosbag2 byte for byte. A bag that cannot be opened
or read raises a ValueError naming the bag and the problem.

This is the strict reader, for bags the project has just written and checks of exact contents;
recordings from the vehicle are read through :func:`uwstego.bags.open_bag`, which reads past damage
and reports it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import apsw
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag1 import ReaderError as Reader1Error
from rosbags.rosbag2 import ReaderError as Reader2Error

from uwstego.bags.layout import METADATA_FILE, resolve_bag_path
from uwstego.bags.messages import (
    IMAGE_TYPES,
    BagImage,
    RawMessage,
    ReadStats,
    decode_bag_image,
    describe_topics,
    typestore,
)

log = logging.getLogger(__name__)

# What rosbags (and the sqlite3 library under it) raise for a bag it cannot open or read on.
READ_ERRORS = (AnyReaderError, Reader1Error, Reader2Error, apsw.Error)


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


def _unreadable(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"{path} is not a readable rosbag2 folder or rosbag1 file: {exc}")


def _open_reader(bag_path: str | Path) -> AnyReader:
    """An open reader (close it); a ValueError naming the bag and the problem if it won't open."""
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_dir() and not (path / METADATA_FILE).exists():
        bag = resolve_bag_path(path)  # raises, saying what is there, if it is not a bag at all
        if bag != path:
            raise ValueError(f"{path} is a synthetic dive folder; its bag is {bag}")
        raise ValueError(f"{path} is not a readable rosbag2 folder: it has storage files but no "
                         "metadata.yaml (an interrupted recording: `ros2 bag reindex` repairs "
                         "it, and `uwstego replay`/`play` read it as it is)")
    if path.is_file() and path.suffix != ".bag":
        raise ValueError(f"{path} is a file; pass the rosbag2 folder that holds it and its "
                         "metadata.yaml")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    return reader


def _storage(path: Path) -> str:
    if path.is_file():
        return "rosbag1"
    # metadata.yaml has been read (and checked) by rosbags already, which does not expose this.
    meta = yaml.safe_load((path / METADATA_FILE).read_text())
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
    except READ_ERRORS as exc:
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
