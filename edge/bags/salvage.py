"""Read the storage files of a bag ourselves, using every part of a damaged file that survives.

``rosbags`` refuses damaged bags outright (an MCAP file cut short has no footer or index, a
truncated sqlite3 file is "malformed" before the first query) or stops at the first bad chunk. A
recording that stopped with the vehicle's power, or a copy that broke off, still holds hours of
good frames, so this module reads the files itself:

* MCAP with an intact footer and summary: the schemas and channels come from the summary and each
  chunk is read at the offset its chunk index gives. A damaged chunk (checksum or size mismatch,
  undecompressable, cut short) is skipped and reading goes on with the next one.
* MCAP without a usable summary (cut short, footer overwritten): the file is walked record by
  record; where a record is broken, the reader scans forward for the next valid record (an MCAP
  opcode whose length and fields are consistent: a chunk whose sizes add up to its length, a
  message on a known channel inside its chunk's time range) and goes on from there.
* Inside a chunk the same forward scan steps over broken records, so zeroed bytes cost only the
  messages they hit. A chunk whose stored CRC32 does not match says so: its messages are read but
  may be corrupt.
* sqlite3: rows in row-id order (write order, no index page needed); a file shorter than its
  header says is padded so that every row before the cut reads; a missing table is reported.

Every finding goes into :attr:`SalvageReader.damage` as one line naming the file and the place.
Messages come in file order, which is recording (log-time) order for rosbag2 writers.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import shutil
import sqlite3
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.bags.messages import RawMessage

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
_OP_CHUNK_INDEX, _OP_STATISTICS, _OP_DATA_END = 0x08, 0x0B, 0x0F
_OP_METADATA, _OP_METADATA_INDEX = 0x0C, 0x0D
ROSBAG2_METADATA = "rosbag2"  # the MCAP metadata record holding a copy of metadata.yaml
_OP_MAX = 0x10  # opcodes 0x01..0x10 are defined by MCAP v0
_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4
_MESSAGE_HEAD = 2 + 4 + 8 + 8
_CHUNK_HEAD = 8 + 8 + 8 + 4 + 4  # times, uncompressed size, crc, compression length
_COMPRESSIONS = ("", "zstd", "lz4")


class _Broken(Exception):
    """A record or field runs past its bytes or does not make sense."""


class _Cursor:
    """Little-endian MCAP field reader over a buffer."""

    def __init__(self, buf: bytes | memoryview | mmap.mmap, pos: int = 0,
                 end: int | None = None) -> None:
        self.buf = memoryview(buf) if not isinstance(buf, memoryview) else buf
        self.pos = pos
        self.end = len(self.buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise _Broken(f"needs {n} bytes at offset {self.pos}, {self.remaining()} left")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def string(self) -> str:
        try:
            return bytes(self.take(self.u32())).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Broken(f"not a string ({exc})") from exc

    def strings(self) -> dict[str, str]:
        length = self.u32()
        inner = _Cursor(self.buf, self.pos, self.pos + length)
        if inner.end > self.end:
            raise _Broken("map runs past its record")
        out = {}
        while inner.remaining():
            key = inner.string()
            out[key] = inner.string()
        self.pos = inner.end
        return out


@dataclass(frozen=True)
class _ChunkRef:
    offset: int
    length: int
    start_ns: int
    end_ns: int


@dataclass
class _McapIndex:
    """What an intact MCAP summary holds."""

    schemas: dict[int, str] = field(default_factory=dict)
    channels: dict[int, tuple[str, str]] = field(default_factory=dict)
    qos: dict[str, str] = field(default_factory=dict)  # topic -> offered_qos_profiles
    chunks: list[_ChunkRef] = field(default_factory=list)
    counts: dict[str, int] | None = None  # topic -> messages, from the statistics


def _schema(rec: _Cursor) -> tuple[int, str]:
    key = rec.u16()
    name = rec.string()
    rec.string()  # encoding
    rec.take(rec.u32())  # definition
    return key, name


def _channel(rec: _Cursor, schemas: dict[int, str]) -> tuple[int, str, str, dict[str, str]]:
    key, schema_id = rec.u16(), rec.u16()
    topic = rec.string()
    rec.string()  # message encoding
    meta = rec.strings()
    return key, topic, schemas.get(schema_id, ""), meta


def _chunk_header(rec: _Cursor) -> tuple[int, int, int, int, str, int]:
    """start, end, uncompressed size, crc, compression, compressed size; checks they fit."""
    start, end, size, crc = rec.u64(), rec.u64(), rec.u64(), rec.u32()
    compression = rec.string()
    stored = rec.u64()
    if compression not in _COMPRESSIONS:
        raise _Broken(f"unknown chunk compression {compression[:20]!r}")
    if start > end or stored != rec.remaining():
        raise _Broken("chunk fields are inconsistent")
    return start, end, size, crc, compression, stored


class SalvageReader:
    """Sequential reader of a bag's storage files; see the module text."""

    def __init__(self, files: list[Path]) -> None:
        if not files:
            raise ValueError("no .mcap or .db3 storage files to read")
        self.files = files
        self.damage: list[str] = []
        self.qos: dict[str, str] = {}
        # rosbag2_bagfile_information as YAML, from the MCAP file's own copy (where found)
        self.serialized_metadata: str | None = None
        self._topics: dict[str, str] = {}
        self._logged: set[str] = set()
        self._indexes: dict[Path, _McapIndex | None] = {}
        self._orphans = 0  # messages of the current file on channels whose record was lost
        # (topic, type, messages) that metadata.yaml lists: tells sqlite3 topics apart when the
        # topic table is lost
        self.hints: list[tuple[str, str, int]] = []

    @classmethod
    def of_folder(cls, bag: Path) -> SalvageReader:
        files = [bag] if bag.is_file() else sorted(bag.glob("*.mcap")) + sorted(bag.glob("*.db3"))
        if not files:
            raise ValueError(f"{bag}: no .mcap or .db3 storage files to read")
        return cls(files)

    def topics(self) -> dict[str, str]:
        """Topic -> message type of every connection that can be found (from the MCAP summary
        where it is intact, else by reading the files)."""
        if not all(self._index(p) is not None for p in self.files if _is_mcap(p)) \
                or any(not _is_mcap(p) for p in self.files):
            for _ in self.messages(topics=set()):
                pass
        return dict(sorted(self._topics.items()))

    def index_counts(self) -> dict[str, int] | None:
        """Messages per topic that the MCAP statistics promise (None: not every file has them)."""
        total: dict[str, int] = {}
        for path in self.files:
            index = self._index(path) if _is_mcap(path) else None
            if index is None or index.counts is None:
                return None
            for topic, n in index.counts.items():
                total[topic] = total.get(topic, 0) + n
        return total

    def span(self) -> tuple[int, int] | None:
        """(first, last + 1) log time from the chunk indexes, None where a file has none."""
        refs = []
        for path in self.files:
            index = self._index(path) if _is_mcap(path) else None
            if index is None:
                return None
            refs += index.chunks
        if not refs:
            return None
        return min(r.start_ns for r in refs), max(r.end_ns for r in refs) + 1

    def messages(self, topics: set[str] | None = None, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[RawMessage]:
        """Every readable message (of ``topics``, if given) with log time in [start, stop).

        What is found damaged is added to :attr:`damage` (once, however often it is read)."""
        for path in self.files:
            try:
                with path.open("rb") as f:
                    head = f.read(16)
            except OSError as exc:
                self._damaged(path, f"cannot be read ({exc})")
                continue
            if head.startswith(MCAP_MAGIC):
                gen = self._mcap(path, topics, start_ns, stop_ns)
            elif head == SQLITE_MAGIC:
                gen = self._sqlite(path, topics)
            else:
                self._damaged(path, "neither an MCAP nor an sqlite3 file (damaged at its start)")
                continue
            for msg in gen:
                if (start_ns is None or msg.t_ns >= start_ns) and (stop_ns is None
                                                                   or msg.t_ns < stop_ns):
                    yield msg

    def _damaged(self, path: Path, reason: str) -> None:
        text = f"{path.name}: {reason}"
        if text not in self.damage:
            self.damage.append(text)
        if text not in self._logged:  # every pass over the bag finds the same damage
            self._logged.add(text)
            log.warning("damaged bag file %s", text)

    # -- MCAP: the summary -------------------------------------------------------------------

    def _index(self, path: Path) -> _McapIndex | None:
        if path not in self._indexes:
            try:
                with path.open("rb") as f, _mapped(f) as buf:
                    self._indexes[path] = self._read_summary(path, buf)
            except OSError:
                self._indexes[path] = None
        return self._indexes[path]

    def _read_summary(self, path: Path, buf: mmap.mmap | bytes) -> _McapIndex | None:
        size = len(buf)
        if size < len(MCAP_MAGIC) * 2 + _FOOTER_SIZE or buf[size - 8:] != MCAP_MAGIC:
            self._damaged(path, "no MCAP footer at the end (cut short or overwritten); reading "
                                "record by record")
            return None
        foot = _Cursor(buf, size - 8 - _FOOTER_SIZE, size - 8)
        try:
            if foot.take(1)[0] != _OP_FOOTER or foot.u64() != _FOOTER_SIZE - 9:
                raise _Broken("the footer record is damaged")
            start, offsets = foot.u64(), foot.u64()
            crc = foot.u32()
            end = offsets or size - 8 - _FOOTER_SIZE
            if not 8 <= start <= end:
                raise _Broken("the footer points outside the file")
            if crc and zlib.crc32(buf[start:size - 8 - 4]) != crc:
                raise _Broken("summary checksum mismatch")
            index = _McapIndex()
            cur = _Cursor(buf, start, end)
            counts: dict[int, int] | None = None
            while cur.remaining():
                op = cur.take(1)[0]
                length = cur.u64()
                rec = _Cursor(cur.buf, cur.pos, cur.pos + length)
                cur.take(length)
                if op == _OP_SCHEMA:
                    key, name = _schema(rec)
                    index.schemas[key] = name
                elif op == _OP_CHANNEL:
                    key, topic, msgtype, meta = _channel(rec, index.schemas)
                    index.channels[key] = (topic, msgtype)
                    if "offered_qos_profiles" in meta:
                        index.qos[topic] = meta["offered_qos_profiles"]
                elif op == _OP_CHUNK_INDEX:
                    t0, t1, offset, length = rec.u64(), rec.u64(), rec.u64(), rec.u64()
                    index.chunks.append(_ChunkRef(offset, length, t0, t1))
                elif op == _OP_METADATA_INDEX:
                    offset, _ = rec.u64(), rec.u64()
                    if rec.string() == ROSBAG2_METADATA and offset + 9 <= len(buf):
                        with contextlib.suppress(_Broken, struct.error):
                            length = struct.unpack_from("<Q", buf, offset + 1)[0]
                            if buf[offset] == _OP_METADATA:
                                self._metadata(_Cursor(buf, offset + 9, offset + 9 + length))
                elif op == _OP_STATISTICS:
                    rec.take(8 + 2 + 4 + 4 + 4 + 4 + 8 + 8)
                    length = rec.u32()
                    inner = _Cursor(rec.buf, rec.pos, rec.pos + length)
                    counts = {}
                    while inner.remaining():
                        key = inner.u16()
                        counts[key] = inner.u64()
        except (_Broken, struct.error) as exc:
            self._damaged(path, f"MCAP summary unreadable ({exc}); reading record by record")
            return None
        if counts is not None:
            index.counts = {}
            for key, n in counts.items():
                topic = index.channels.get(key, (f"channel {key}", ""))[0]
                index.counts[topic] = index.counts.get(topic, 0) + n
        for topic, msgtype in index.channels.values():
            self._topics.setdefault(topic, msgtype)
        self.qos.update(index.qos)
        index.chunks.sort(key=lambda c: c.offset)
        return index

    # -- MCAP: records -----------------------------------------------------------------------

    def _mcap(self, path: Path, topics: set[str] | None, start_ns: int | None,
              stop_ns: int | None) -> Iterator[RawMessage]:
        index = self._index(path)
        self._orphans = 0
        with path.open("rb") as f, _mapped(f) as buf:
            if index is not None:
                yield from self._indexed(path, buf, index, topics, start_ns, stop_ns)
            else:
                yield from self._scan(path, buf, topics)
        if self._orphans:
            self._damaged(path, f"{self._orphans} messages on channels whose definition was lost "
                                "with the damage cannot be attributed to a topic")

    def _indexed(self, path: Path, buf: mmap.mmap | bytes, index: _McapIndex,
                 topics: set[str] | None, start_ns: int | None,
                 stop_ns: int | None) -> Iterator[RawMessage]:
        schemas, channels = dict(index.schemas), dict(index.channels)
        for number, ref in enumerate(index.chunks):
            if (start_ns is not None and ref.end_ns < start_ns) or (stop_ns is not None
                                                                    and ref.start_ns >= stop_ns):
                continue
            where = f"chunk {number + 1} of {len(index.chunks)} at byte {ref.offset}"
            try:
                cur = _Cursor(buf, ref.offset, ref.offset + ref.length)
                if cur.remaining() != ref.length:
                    raise _Broken("the file ends inside it")
                if cur.take(1)[0] != _OP_CHUNK or cur.u64() != ref.length - 9:
                    raise _Broken("its record header is damaged")
                records = _chunk_records(cur)
            except (_Broken, struct.error) as exc:
                self._damaged(path, f"{where}: {exc}; skipped, reading on with the next chunk")
                continue
            yield from self._records(path, where, records, schemas, channels, topics)

    def _scan(self, path: Path, buf: mmap.mmap | bytes,
              topics: set[str] | None) -> Iterator[RawMessage]:
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        size, pos = len(buf), len(MCAP_MAGIC)
        while pos < size:
            if size - pos < 9:
                self._damaged(path, f"ends at byte {pos} inside a record header (cut short)")
                return
            op, length = buf[pos], struct.unpack_from("<Q", buf, pos + 1)[0]
            body = _Cursor(buf, pos + 9, pos + 9 + length) if pos + 9 + length <= size else None
            if op in (_OP_FOOTER, _OP_DATA_END) and body is not None:
                return  # the data section is over
            if body is None and op == _OP_CHUNK:
                yield from self._cut_chunk(path, buf, pos, length, schemas, channels, topics)
                return
            try:
                if body is None or not 0 < op <= _OP_MAX:
                    raise _Broken("not a record" if body is not None else
                                  f"a record of {length} bytes runs past the end of the file")
                if op == _OP_CHUNK:
                    records = _chunk_records(body)
                    yield from self._records(path, f"chunk at byte {pos}", records, schemas,
                                             channels, topics)
                elif op in (_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE):
                    yield from self._record(op, body, schemas, channels, topics)
                elif op == _OP_METADATA:
                    self._metadata(body)
                pos += 9 + length
                continue
            except (_Broken, struct.error) as exc:
                reason = str(exc)
            found = _next_top_record(buf, pos + 1)
            if found is None:
                self._damaged(path, f"record at byte {pos}: {reason}; no valid record after it "
                                    "(cut short)")
                return
            self._damaged(path, f"record at byte {pos}: {reason}; {found - pos} bytes skipped, "
                                f"reading on at byte {found}")
            pos = found

    def _metadata(self, rec: _Cursor) -> None:
        if rec.string() == ROSBAG2_METADATA:
            text = rec.strings().get("serialized_metadata")
            if text:
                self.serialized_metadata = text

    def _cut_chunk(self, path: Path, buf: mmap.mmap | bytes, pos: int, length: int,
                   schemas: dict[int, str], channels: dict[int, tuple[str, str]],
                   topics: set[str] | None) -> Iterator[RawMessage]:
        """The last chunk of a file cut short: the records before the cut, if uncompressed."""
        size = len(buf)
        where = f"chunk at byte {pos}"
        try:
            rec = _Cursor(buf, pos + 9, size)
            rec.take(8 + 8)
            declared, _ = rec.u64(), rec.u32()
            compression = rec.string()
            rec.u64()
        except (_Broken, struct.error):
            self._damaged(path, f"{where}: cut short inside its header; nothing after it is read")
            return
        if compression:
            self._damaged(path, f"{where}: {compression} chunk cut short after {size - pos} of "
                                f"{length + 9} bytes; its messages are lost")
            return
        self._damaged(path, f"{where}: cut short after {size - pos} of {length + 9} bytes; the "
                            "messages before the cut are read")
        records = rec.take(min(declared, rec.remaining()))
        yield from self._records(path, where, (records, True), schemas, channels, topics)

    def _records(self, path: Path, where: str, records: tuple[memoryview, bool],
                 schemas: dict[int, str], channels: dict[int, tuple[str, str]],
                 topics: set[str] | None) -> Iterator[RawMessage]:
        data, crc_ok = records
        size, pos, count = len(data), 0, 0
        while pos < size:
            op, length = data[pos], (struct.unpack_from("<Q", data, pos + 1)[0]
                                     if size - pos >= 9 else -1)
            try:
                if length < 0 or pos + 9 + length > size or op not in (
                        _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE):
                    raise _Broken("not a schema, channel or message record")
                yield from self._record(op, _Cursor(data, pos + 9, pos + 9 + length), schemas,
                                        channels, topics)
                count += op == _OP_MESSAGE
                pos += 9 + length
                continue
            except (_Broken, struct.error) as exc:
                reason = str(exc)
            found = _next_message(data, pos + 1, channels)
            lost = (found if found is not None else size) - pos
            self._damaged(path, f"{where}: {lost} bytes unreadable at offset {pos} of its "
                                f"records ({reason})" + ("; reading on after them"
                                                         if found is not None else ""))
            if found is None:
                break
            pos = found
        if not crc_ok:
            self._damaged(path, f"{where}: checksum mismatch; its {count} messages were read but "
                                "may be corrupt")

    def _record(self, op: int, rec: _Cursor, schemas: dict[int, str],
                channels: dict[int, tuple[str, str]],
                topics: set[str] | None) -> Iterator[RawMessage]:
        if op == _OP_SCHEMA:
            key, name = _schema(rec)
            schemas[key] = name
        elif op == _OP_CHANNEL:
            key, topic, msgtype, meta = _channel(rec, schemas)
            channels[key] = (topic, msgtype)
            self._topics.setdefault(topic, msgtype)
            if "offered_qos_profiles" in meta:
                self.qos.setdefault(topic, meta["offered_qos_profiles"])
        elif op == _OP_MESSAGE:
            channel_id = rec.u16()
            if channel_id not in channels:
                self._orphans += 1
                return
            rec.take(4)  # sequence
            t_ns = rec.u64()
            rec.take(8)  # publish time
            topic, msgtype = channels.get(channel_id, ("", ""))
            if topic and (topics is None or topic in topics):
                yield RawMessage(topic, msgtype, t_ns, bytes(rec.take(rec.remaining())))

    # -- sqlite3 -----------------------------------------------------------------------------

    def _sqlite(self, path: Path, topics: set[str] | None) -> Iterator[RawMessage]:
        with contextlib.ExitStack() as stack:
            db = self._sqlite_readable(path, stack)
            con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
            stack.callback(con.close)
            try:
                rows = con.execute("SELECT id, name, type FROM topics").fetchall()
                if "offered_qos_profiles" in {r[1] for r in con.execute(
                        "PRAGMA table_info(topics)")}:
                    for name, qos in con.execute("SELECT name, offered_qos_profiles FROM topics"):
                        self.qos.setdefault(str(name), str(qos or ""))
            except sqlite3.DatabaseError as exc:
                rows = self._topics_from_hints(path, con, str(exc))
                if not rows:
                    return
            by_id = {int(i): (str(name), str(kind)) for i, name, kind in rows}
            for name, kind in by_id.values():
                self._topics.setdefault(name, kind)
            wanted = [i for i, (name, _) in by_id.items() if topics is None or name in topics]
            if not wanted:
                return
            yield from self._sqlite_rows(path, con, by_id, wanted)

    def _sqlite_rows(self, path: Path, con: sqlite3.Connection,
                     by_id: dict[int, tuple[str, str]],
                     wanted: list[int]) -> Iterator[RawMessage]:
        """The rows of ``wanted`` topics in row-id order (the write order; it needs no index
        page, which may be lost). Past a damaged page the table is searched again from the next
        row id that reads, so only the rows on damaged pages are lost."""
        marks = ",".join("?" * len(wanted))
        last = 0
        while True:
            try:
                cursor = con.execute(f"SELECT id, topic_id, timestamp, data FROM messages WHERE "
                                     f"id > ? AND topic_id IN ({marks}) ORDER BY id",
                                     (last, *wanted))
                for row_id, topic_id, t_ns, data in cursor:
                    name, kind = by_id[int(topic_id)]
                    last = int(row_id)
                    yield RawMessage(name, kind, int(t_ns), bytes(data))
                return
            except sqlite3.DatabaseError as exc:
                reason = str(exc)
            # The cursor reads a row ahead: the rows up to the damaged one are read one by one.
            row, top = last + 1, _max_row(con, last)
            while row <= top and (one := _read_row(con, row)) is not None:
                if one and one[1] in wanted:
                    name, kind = by_id[int(one[1])]
                    yield RawMessage(name, kind, int(one[2]), bytes(one[3]))
                row += 1
            resume = self._next_readable_row(con, row) if row <= top else None
            self._damaged(path, f"message table unreadable at row {row} ({reason})" + (
                f"; reading on from row {resume + 1}" if resume is not None else ""))
            if resume is None:
                return
            last = resume

    @staticmethod
    def _next_readable_row(con: sqlite3.Connection, last: int) -> int | None:
        """The row id before the first row past ``last`` that reads again, or None."""
        def readable(row: int) -> bool:
            return _read_row(con, row) is not None

        limit = _max_row(con, last)
        bad, step = last, 1
        while last + step <= limit and not readable(last + step):
            bad, step = last + step, step * 2
        if last + step > limit:
            return None
        good = last + step
        while good - bad > 1:  # the first readable row after the damaged ones
            mid = (bad + good) // 2
            bad, good = (bad, mid) if readable(mid) else (mid, good)
        return good - 1

    def _topics_from_hints(self, path: Path, con: sqlite3.Connection,
                           why: str) -> list[tuple[int, str, str]]:
        """Without the topic table, tell the topics of the messages apart by the topics that
        metadata.yaml lists (:attr:`hints`): a topic id is given a topic when exactly one listed
        topic has its message count and a type whose CDR its first message round-trips."""
        from edge.bags.messages import typestore

        lost = f"topic table unreadable ({why})"
        try:
            ids = con.execute("SELECT topic_id, COUNT(*), MIN(id) FROM messages "
                              "GROUP BY topic_id").fetchall()
        except sqlite3.DatabaseError:
            ids = []
        store, rows, unknown = typestore(), [], 0
        for topic_id, count, first in ids:
            (data,) = con.execute("SELECT data FROM messages WHERE id = ?", (first,)).fetchone()
            matches = []
            for name, msgtype, expected in self.hints:
                if expected != count or msgtype not in store.types:
                    continue
                with contextlib.suppress(Exception):  # not this type's CDR
                    if store.serialize_cdr(store.deserialize_cdr(bytes(data), msgtype),
                                           msgtype) == bytes(data):
                        matches.append((name, msgtype))
            if len(matches) == 1:
                rows.append((int(topic_id), *matches[0]))
            else:
                unknown += int(count)
        told = ", ".join(f"{i} -> {name}" for i, name, _ in rows)
        self._damaged(path, lost + (f"; topics told apart by their count and type in "
                                    f"metadata.yaml ({told})" if rows else "")
                      + (f"; {unknown} messages cannot be attributed to a topic"
                         if unknown or not ids else ""))
        return rows

    def _sqlite_readable(self, path: Path, stack: contextlib.ExitStack) -> Path:
        """``path``, or a zero-padded temporary copy if the file is shorter than its header says.

        SQLite refuses a short file as a whole; padded, the missing pages read as damage only
        where a query reaches them, so every row before the cut is still returned.
        """
        with path.open("rb") as f:
            header = f.read(100)
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        expected = struct.unpack(">I", header[28:32])[0] * page_size
        actual = path.stat().st_size
        if actual >= expected:
            return path
        self._damaged(path, f"truncated: {actual} of {expected} bytes; reading the rows before "
                            "the cut")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="uwstego-salvage-")))
        copy = tmp / path.name
        shutil.copyfile(path, copy)
        with copy.open("ab") as f:
            f.truncate(expected)
        return copy


def _max_row(con: sqlite3.Connection, last: int) -> int:
    """The largest message row id (an upper bound past ``last`` where it does not read)."""
    try:
        (top,) = con.execute("SELECT MAX(id) FROM messages").fetchone()
    except sqlite3.DatabaseError:
        top = None
    return int(top) if top is not None else last + (1 << 20)


def _read_row(con: sqlite3.Connection, row: int) -> tuple | None:
    """Message row ``row`` (an empty tuple if there is none), None if it does not read."""
    try:
        found = con.execute("SELECT id, topic_id, timestamp, data FROM messages WHERE id = ?",
                            (row,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    return tuple(found) if found is not None else ()


def _is_mcap(path: Path) -> bool:
    return path.suffix == ".mcap"


@contextlib.contextmanager
def _mapped(f: object) -> Iterator[mmap.mmap | bytes]:
    """The whole file without reading it into memory (bags are often larger than RAM)."""
    fileno = f.fileno()  # type: ignore[attr-defined]
    import os

    if os.fstat(fileno).st_size == 0:
        yield b""
        return
    buf = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
    try:
        yield buf
    finally:
        with contextlib.suppress(BufferError):  # a view still held elsewhere: freed with it
            buf.close()


def _chunk_records(rec: _Cursor) -> tuple[memoryview, bool]:
    """The records of a chunk record's body, decompressed, and whether its CRC matched (or was
    not stored)."""
    _, _, size, crc, compression, stored = _chunk_header(rec)
    raw = rec.take(stored)
    if compression:
        from rosbags.rosbag2.storage_mcap import decompress

        try:
            return memoryview(decompress(bytes(raw), compression, size, crc)), True
        except Exception as exc:  # whatever the codec says, the chunk is unreadable
            raise _Broken(f"{compression} chunk does not decompress ({exc})") from exc
    if size != stored:
        raise _Broken(f"uncompressed chunk of {stored} bytes says it holds {size}")
    return raw, not crc or zlib.crc32(raw) == crc


def _next_message(data: memoryview, pos: int, channels: dict[int, tuple[str, str]]) -> int | None:
    """The offset of the next plausible message record in a chunk's records, from ``pos``."""
    raw = data.obj if isinstance(data.obj, bytes) and len(data.obj) == len(data) else bytes(data)
    size = len(raw)
    while True:
        pos = raw.find(b"\x05", pos)
        if pos < 0 or size - pos < 9 + _MESSAGE_HEAD:
            return None
        length = struct.unpack_from("<Q", raw, pos + 1)[0]
        channel = struct.unpack_from("<H", raw, pos + 9)[0]
        if _MESSAGE_HEAD <= length <= size - pos - 9 and (channel in channels or not channels):
            end = pos + 9 + length
            # The record after it must be one too, or the chunk must end there.
            if end == size or (size - end >= 9 and raw[end] in (_OP_SCHEMA, _OP_CHANNEL,
                                                                _OP_MESSAGE)
                               and struct.unpack_from("<Q", raw, end + 1)[0] <= size - end - 9):
                return pos
        pos += 1


def _next_top_record(buf: mmap.mmap | bytes, pos: int) -> int | None:
    """The offset of the next chunk record whose fields add up, from ``pos`` (scan mode)."""
    size = len(buf)
    while True:
        pos = buf.find(b"\x06", pos)
        if pos < 0 or size - pos < 9 + _CHUNK_HEAD + 8:
            return None
        length = struct.unpack_from("<Q", buf, pos + 1)[0]
        if length <= size - pos - 9:
            with contextlib.suppress(_Broken, struct.error):
                _chunk_header(_Cursor(buf, pos + 9, pos + 9 + length))
                return pos
        pos += 1
