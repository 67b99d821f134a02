"""The front door to a recording: :func:`open_bag` reads any bag the product meets, damaged or not.

``open_bag(path)`` takes a rosbag2 folder (MCAP or sqlite3, storage- file- or message-compressed),
a single storage file, a rosbag1 file, or a synthetic dive folder (``dive.json`` plus ``bag/``).
The :class:`Bag` it returns says what the index promises (topics, types, message counts,
QoS profiles, ground-truth topics and their class names) and reads the messages with
:mod:`uwstego.bags.salvage`, which uses every part of a damaged file that survives. Whatever was
found damaged is in :attr:`Bag.damage`, one line per finding; after a whole topic was read, the
count its index promised is compared with what was read, and a shortfall is reported per topic
(:attr:`Bag.losses`), so that no loss is silent. Training, replay and play all read through this,
so they read past the same damage and report it the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from uwstego.bags.layout import (
    CLASS_NAMES_KEY,
    LABEL_TOPICS_KEY,
    METADATA_FILE,
    is_storage_file,
    resolve_bag_path,
)
from uwstego.bags.messages import (
    IMAGE_TYPES,
    BagImage,
    RawMessage,
    ReadStats,
    decode_bag_image,
    describe_topics,
)
from uwstego.bags.reader import bag_info, iter_bag_messages
from uwstego.bags.salvage import SalvageReader

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TopicLoss:
    """Messages a topic's index promised and how many were read."""

    expected: int
    read: int

    @property
    def lost(self) -> int:
        return self.expected - self.read


def _metadata(path: Path) -> dict[str, Any]:
    meta = yaml.safe_load(path.read_text())
    info = meta["rosbag2_bagfile_information"] if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        raise ValueError("no rosbag2_bagfile_information")
    return info


def _class_names(path: Path, text: object) -> dict[str, tuple[str, ...]]:
    """The label topics' class names kept in custom_data (written by BagWriter); an entry that
    is not a list of names names nothing."""
    if text is None:
        return {}
    try:
        doc = json.loads(str(text))
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        log.warning("%s: ignoring malformed %s in the bag's metadata", path, CLASS_NAMES_KEY)
        return {}
    return {str(topic): tuple(names) for topic, names in doc.items()
            if isinstance(names, list) and names and all(isinstance(n, str) for n in names)}


class Bag:
    """An opened recording; see the module text. Reading it again re-reads the files."""

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_bag_path(path)
        self.damage: list[str] = []
        self.losses: dict[str, TopicLoss] = {}
        self.topics: dict[str, str] = {}
        self.counts: dict[str, int] | None = None  # per topic, from the index; None: unknown
        self.qos_profiles: dict[str, str] = {}
        self.label_topics: tuple[str, ...] = ()
        self.class_names: dict[str, tuple[str, ...]] = {}  # label topic -> name of each id
        self.start_ns: int | None = None
        self.duration_ns: int | None = None
        self.storage = "rosbag1" if self.path.suffix == ".bag" else "unknown"
        self._message_compression = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._firsts: dict[str, RawMessage | None] = {}
        if self.storage == "rosbag1":
            self._open_rosbag1()
            return
        files = self._read_metadata()
        self.reader = SalvageReader(self._storage_files(files),
                                    [(t, m, (self.counts or {}).get(t, -1))
                                     for t, m in self.topics.items()])
        if self.storage == "unknown":
            self.storage = "mcap" if self.reader.files[0].suffix == ".mcap" else "sqlite3"
        found = self.reader.topics() if not self.topics else {}
        self._recover_metadata()
        self._note(self.reader.damage)
        for topic, msgtype in found.items():
            self.topics.setdefault(topic, msgtype)
        self.topics = dict(sorted(self.topics.items()))
        if self.counts is None:
            self.counts = self.reader.index_counts()
        for topic, qos in self.reader.qos.items():
            self.qos_profiles.setdefault(topic, qos)
        if self.start_ns is None and (span := self.reader.span()) is not None:
            self.start_ns, self.duration_ns = span[0], span[1] - span[0]

    # -- opening ----------------------------------------------------------------------------

    def _note(self, items: Collection[str]) -> None:
        for item in items:
            if item not in self.damage:
                self.damage.append(item)

    def _read_metadata(self) -> list[str]:
        """Fill in what metadata.yaml says; returns the storage files it lists."""
        meta_path = self.path / METADATA_FILE
        if self.path.is_file():
            return [self.path.name]
        if not meta_path.exists():
            self._note(["metadata.yaml is missing (a recording that was not closed); the "
                        "storage files are read without it"])
            return []
        try:
            return self._apply(_metadata(meta_path))
        except (yaml.YAMLError, KeyError, TypeError, ValueError, OSError) as exc:
            text = " ".join(str(exc).split())
            self._note([f"metadata.yaml cannot be read ({type(exc).__name__}: {text}); the "
                        "storage files are read without it"])
            self.topics, self.counts, self.qos_profiles = {}, None, {}
            return []

    def _apply(self, info: dict[str, Any]) -> list[str]:
        """Take what a rosbag2_bagfile_information says; returns the storage files it lists."""
        counts: dict[str, int] = {}
        for item in info.get("topics_with_message_count") or []:
            t = item["topic_metadata"]
            name = str(t["name"])
            self.topics[name] = str(t["type"])
            counts[name] = counts.get(name, 0) + int(item["message_count"])
            qos = t.get("offered_qos_profiles", "")
            self.qos_profiles[name] = qos if isinstance(qos, str) else yaml.safe_dump(qos)
        self.counts = counts
        self.storage = str(info.get("storage_identifier") or "unknown")
        if info.get("compression_mode") == "message":
            self._message_compression = str(info.get("compression_format") or "zstd")
        custom = info.get("custom_data") or {}
        self.label_topics = tuple(t for t in str(custom.get(LABEL_TOPICS_KEY, "")).split(",")
                                  if t)
        self.class_names = _class_names(self.path, custom.get(CLASS_NAMES_KEY))
        if int(info.get("message_count") or 0):
            self.start_ns = int(info["starting_time"]["nanoseconds_since_epoch"])
            self.duration_ns = int(info["duration"]["nanoseconds"])
        return [str(p) for p in info.get("relative_file_paths") or []]

    def _recover_metadata(self) -> None:
        """Without a readable metadata.yaml, the copy an MCAP file keeps of it (rosbag2 and
        rosbags write one when they close the file) supplies counts, QoS and label marks."""
        text = self.reader.serialized_metadata
        if self.topics or not text:
            return
        try:
            info = yaml.safe_load(text)
            self._apply(info if isinstance(info, dict) else {})
        except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            self.topics, self.counts, self.qos_profiles = {}, None, {}
            log.warning("%s: the MCAP copy of the metadata is unreadable too (%s)", self.path, exc)
            return
        self._note(["the metadata was taken from the copy inside the MCAP file"])

    def _storage_files(self, listed: list[str]) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        base = self.path
        files = [base / p for p in listed if (base / p).exists()]
        if len(files) < len(listed):
            missing = sorted(set(listed) - {f.name for f in files})
            self._note([f"storage files listed in metadata.yaml are missing: {', '.join(missing)}"])
        if not files:
            files = sorted(p for p in base.iterdir() if is_storage_file(p))
        if not files:
            raise ValueError(f"{self.path} holds no storage file (.mcap or .db3) to read")
        return [self._decompressed(f) if f.suffix == ".zstd" else f for f in files]

    def _decompressed(self, path: Path) -> Path:
        """A file-compressed storage file, decompressed into a temporary folder (as far as it
        decompresses)."""
        from rosbags.rosbag2.writer import zstd

        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="uwstego-bag-")
        out = Path(self._tmp.name) / path.name[:-len(".zstd")]
        try:
            with zstd.open(path, "rb") as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError, zstd.ZstdError) as exc:
            self._note([f"{path.name}: decompression stopped at byte {out.stat().st_size} of "
                        f"the storage file ({exc}); reading what came out"])
        return out

    def _open_rosbag1(self) -> None:
        info = bag_info(self.path)
        self.topics, self.counts = info.topics, info.counts
        self.start_ns, self.duration_ns = info.start_ns, info.duration_ns

    # -- what it holds ----------------------------------------------------------------------

    @property
    def image_topics(self) -> dict[str, str]:
        return {t: m for t, m in self.topics.items() if m in IMAGE_TYPES}

    def span(self) -> tuple[int, int]:
        """(first, last + 1) message log time in ns, from the index or by reading the bag."""
        if self.start_ns is not None and self.duration_ns is not None:
            return self.start_ns, self.start_ns + self.duration_ns
        times = [m.t_ns for m in self.messages()]
        return (min(times), max(times) + 1) if times else (0, 0)

    def first_message(self, topic: str) -> RawMessage | None:
        if topic not in self._firsts:
            self._firsts[topic] = None
            with contextlib.closing(self.messages((topic,))) as gen:
                self._firsts[topic] = next(gen, None)
        return self._firsts[topic]

    # -- reading ----------------------------------------------------------------------------

    def messages(self, topics: Collection[str] | None = None, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[RawMessage]:
        """The stored messages of ``topics`` (all if None) with log time in [start, stop), in
        recording order, as CDR; damage is recorded in :attr:`damage`, never raised."""
        wanted = set(topics) if topics is not None else None
        read: Counter[str] = Counter()
        complete = False
        try:
            for msg in self._raw(wanted, start_ns, stop_ns):
                read[msg.topic] += 1
                yield msg
            complete = start_ns is None and stop_ns is None
        finally:
            if self.storage != "rosbag1":
                self._note(self.reader.damage)
            if complete:
                self._compare(wanted, read)

    def _raw(self, topics: set[str] | None, start_ns: int | None,
             stop_ns: int | None) -> Iterator[RawMessage]:
        if self.storage == "rosbag1":
            count = 0
            try:
                for msg in iter_bag_messages(self.path, topics, start_ns, stop_ns):
                    count += 1
                    yield msg
            except ValueError as exc:
                self._note([str(exc)])
            return
        messages = self.reader.messages(topics, start_ns, stop_ns)
        if not self._message_compression:
            yield from messages
            return
        from rosbags.rosbag2.writer import zstd

        for msg in messages:
            try:
                yield RawMessage(msg.topic, msg.msgtype, msg.t_ns, zstd.decompress(msg.data))
            except zstd.ZstdError as exc:
                self._note([f"{msg.topic}: a message at t={msg.t_ns} does not decompress "
                            f"({exc})"])

    def _compare(self, topics: set[str] | None, read: Counter[str]) -> None:
        if self.counts is None:
            if self.damage:
                self._note(["the index with the message counts is lost: how many messages the "
                            "damage cost cannot be told"])
            return
        for topic, expected in sorted(self.counts.items()):
            if topics is not None and topic not in topics:
                continue
            if read[topic] != expected:
                self.losses[topic] = TopicLoss(expected, read[topic])
                self._note([f"{topic}: the index lists {expected} messages, {read[topic]} were "
                            f"read ({expected - read[topic]} lost to the damage)"])
                log.warning("%s: %s", self.path, self.damage[-1])

    def read(self, topic: str, every: int = 1, stats: ReadStats | None = None,
             keep_raw: bool = False, companions: Collection[str] = (),
             start_ns: int | None = None, stop_ns: int | None = None
             ) -> Iterator[BagImage | RawMessage]:
        """Every ``every``-th frame of the image ``topic`` (decoded), interleaved in recording
        order with every stored message of the ``companions`` topics (read in the same pass).
        Frames that fail to decode are skipped and counted in ``stats``; ``keep_raw``: frames
        carry their stored message too."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        stats = stats if stats is not None else ReadStats()
        images = self.image_topics
        if topic not in images:
            raise ValueError(f"topic {topic!r} is not an image topic of {self.path}; image "
                             f"topics: {describe_topics(images)}")
        index = -1
        for msg in self.messages({topic, *companions}, start_ns, stop_ns):
            if msg.topic != topic:
                yield msg
                continue
            index += 1
            if index % every:
                continue
            image = decode_bag_image(msg, index, stats, keep_raw)
            if image is not None:
                yield image

    def images(self, topic: str, every: int = 1, stats: ReadStats | None = None,
               keep_raw: bool = False, start_ns: int | None = None,
               stop_ns: int | None = None) -> Iterator[BagImage]:
        """:meth:`read` without companions: the decoded frames alone."""
        for item in self.read(topic, every, stats, keep_raw, (), start_ns, stop_ns):
            if isinstance(item, BagImage):
                yield item


def open_bag(path: str | Path) -> Bag:
    """The recording at ``path`` (see the module text). FileNotFoundError if nothing is there;
    ValueError, one line naming what was found, if it is not a bag."""
    return Bag(path)
