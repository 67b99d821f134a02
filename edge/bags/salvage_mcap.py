"""MCAP storage files read record by record, using every part of a damaged file that survives.

* With an intact footer and summary, the schemas and channels come from the summary and each
  chunk is read at the offset its chunk index gives. A damaged chunk (checksum or size mismatch,
  undecompressable, cut short) is skipped and reading goes on with the next one.
* Without a usable summary (cut short, footer overwritten), the file is walked record by record;
  where a record is broken, the reader scans forward for the next valid record (a chunk whose
  sizes add up to its length) and goes on from there.
* Inside a chunk the same forward scan steps over broken records (to the next message on a known
  channel), so zeroed bytes cost only the messages they hit. A chunk whose stored CRC32 does not
  match says so: its messages are read but may be corrupt.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from uwstego.bags.findings import Findings
from uwstego.bags.layout import MCAP_MAGIC
from uwstego.bags.mcap_records import (
    FOOTER_SIZE,
    INNER_OPS,
    OP_CHANNEL,
    OP_CHUNK,
    OP_CHUNK_INDEX,
    OP_DATA_END,
    OP_FOOTER,
    OP_MAX,
    OP_MESSAGE,
    OP_METADATA,
    OP_METADATA_INDEX,
    OP_SCHEMA,
    OP_STATISTICS,
    Broken,
    Cursor,
    channel,
    chunk_records,
    mapped,
    next_chunk,
    next_message,
    schema,
)
from uwstego.bags.messages import RawMessage

ROSBAG2_METADATA = "rosbag2"  # the MCAP metadata record holding a copy of metadata.yaml
Channels = dict[int, tuple[str, str]]  # channel id -> (topic, message type)


@dataclass(frozen=True)
class ChunkRef:
    offset: int
    length: int
    start_ns: int
    end_ns: int


@dataclass
class McapIndex:
    """What an intact MCAP summary holds."""

    schemas: dict[int, str] = field(default_factory=dict)
    channels: Channels = field(default_factory=dict)
    qos: dict[str, str] = field(default_factory=dict)  # topic -> offered_qos_profiles
    chunks: list[ChunkRef] = field(default_factory=list)
    counts: dict[str, int] | None = None  # topic -> messages, from the statistics


class McapSalvage:
    """The MCAP files of one bag; see the module text. Findings go into ``found``."""

    def __init__(self, found: Findings) -> None:
        self.found = found
        # rosbag2_bagfile_information as YAML, from the MCAP file's own copy (where found)
        self.serialized_metadata: str | None = None
        self._indexes: dict[Path, McapIndex | None] = {}
        self._orphans = 0  # messages of the current file on channels whose record was lost

    def index(self, path: Path) -> McapIndex | None:
        """The file's summary, None where it is damaged or missing (read once)."""
        if path not in self._indexes:
            try:
                with path.open("rb") as f, mapped(f) as buf:
                    self._indexes[path] = self._read_summary(path, buf)
            except OSError:
                self._indexes[path] = None
        return self._indexes[path]

    def messages(self, path: Path, topics: set[str] | None, start_ns: int | None,
                 stop_ns: int | None) -> Iterator[RawMessage]:
        """The file's readable messages of ``topics`` (all if None), in file order; the chunks
        wholly outside [start, stop) are not read."""
        index = self.index(path)
        self._orphans = 0
        with path.open("rb") as f, mapped(f) as buf:
            if index is not None:
                yield from self._indexed(path, buf, index, topics, start_ns, stop_ns)
            else:
                yield from self._scan(path, buf, topics)
        if self._orphans:
            self.found.damaged(path, f"{self._orphans} messages on channels whose definition "
                                     "was lost with the damage cannot be attributed to a topic")

    # -- the summary -------------------------------------------------------------------------

    def _read_summary(self, path: Path, buf: mmap.mmap | bytes) -> McapIndex | None:
        size = len(buf)
        if size < len(MCAP_MAGIC) * 2 + FOOTER_SIZE or buf[size - 8:] != MCAP_MAGIC:
            self.found.damaged(path, "no MCAP footer at the end (cut short or overwritten); "
                                     "reading record by record")
            return None
        try:
            index = self._summary(buf, size)
        except (Broken, struct.error) as exc:
            self.found.damaged(path, f"MCAP summary unreadable ({exc}); reading record by "
                                     "record")
            return None
        for topic, msgtype in index.channels.values():
            self.found.topic(topic, msgtype, index.qos.get(topic))
        index.chunks.sort(key=lambda c: c.offset)
        return index

    def _summary(self, buf: mmap.mmap | bytes, size: int) -> McapIndex:
        foot = Cursor(buf, size - 8 - FOOTER_SIZE, size - 8)
        if foot.take(1)[0] != OP_FOOTER or foot.u64() != FOOTER_SIZE - 9:
            raise Broken("the footer record is damaged")
        start, offsets = foot.u64(), foot.u64()
        crc = foot.u32()
        end = offsets or size - 8 - FOOTER_SIZE
        if not 8 <= start <= end:
            raise Broken("the footer points outside the file")
        if crc and zlib.crc32(buf[start:size - 8 - 4]) != crc:
            raise Broken("summary checksum mismatch")
        index = McapIndex()
        cur = Cursor(buf, start, end)
        counts: dict[int, int] | None = None
        while cur.remaining():
            op = cur.take(1)[0]
            length = cur.u64()
            rec = Cursor(cur.buf, cur.pos, cur.pos + length)
            cur.take(length)
            if op == OP_SCHEMA:
                key, name = schema(rec)
                index.schemas[key] = name
            elif op == OP_CHANNEL:
                key, topic, msgtype, meta = channel(rec, index.schemas)
                index.channels[key] = (topic, msgtype)
                if "offered_qos_profiles" in meta:
                    index.qos[topic] = meta["offered_qos_profiles"]
            elif op == OP_CHUNK_INDEX:
                t0, t1, offset, length = rec.u64(), rec.u64(), rec.u64(), rec.u64()
                index.chunks.append(ChunkRef(offset, length, t0, t1))
            elif op == OP_METADATA_INDEX:
                self._metadata_at(buf, rec)
            elif op == OP_STATISTICS:
                rec.take(8 + 2 + 4 + 4 + 4 + 4 + 8 + 8)
                length = rec.u32()
                inner = Cursor(rec.buf, rec.pos, rec.pos + length)
                counts = {}
                while inner.remaining():
                    key = inner.u16()
                    counts[key] = inner.u64()
        if counts is not None:
            index.counts = {}
            for key, n in counts.items():
                topic = index.channels.get(key, (f"channel {key}", ""))[0]
                index.counts[topic] = index.counts.get(topic, 0) + n
        return index

    def _metadata_at(self, buf: mmap.mmap | bytes, rec: Cursor) -> None:
        """The metadata record a metadata index points at, if it is rosbag2's copy."""
        offset, _ = rec.u64(), rec.u64()
        if rec.string() == ROSBAG2_METADATA and offset + 9 <= len(buf):
            with contextlib.suppress(Broken, struct.error):
                length = struct.unpack_from("<Q", buf, offset + 1)[0]
                if buf[offset] == OP_METADATA:
                    self._metadata(Cursor(buf, offset + 9, offset + 9 + length))

    def _metadata(self, rec: Cursor) -> None:
        if rec.string() == ROSBAG2_METADATA:
            text = rec.strings().get("serialized_metadata")
            if text:
                self.serialized_metadata = text

    # -- the records -------------------------------------------------------------------------

    def _indexed(self, path: Path, buf: mmap.mmap | bytes, index: McapIndex,
                 topics: set[str] | None, start_ns: int | None,
                 stop_ns: int | None) -> Iterator[RawMessage]:
        schemas, channels = dict(index.schemas), dict(index.channels)
        for number, ref in enumerate(index.chunks):
            if (start_ns is not None and ref.end_ns < start_ns) or (stop_ns is not None
                                                                    and ref.start_ns >= stop_ns):
                continue
            where = f"chunk {number + 1} of {len(index.chunks)} at byte {ref.offset}"
            try:
                cur = Cursor(buf, ref.offset, ref.offset + ref.length)
                if cur.remaining() != ref.length:
                    raise Broken("the file ends inside it")
                if cur.take(1)[0] != OP_CHUNK or cur.u64() != ref.length - 9:
                    raise Broken("its record header is damaged")
                records = chunk_records(cur)
            except (Broken, struct.error) as exc:
                self.found.damaged(path, f"{where}: {exc}; skipped, reading on with the next "
                                         "chunk")
                continue
            yield from self._records(path, where, records, schemas, channels, topics)

    def _scan(self, path: Path, buf: mmap.mmap | bytes,
              topics: set[str] | None) -> Iterator[RawMessage]:
        schemas: dict[int, str] = {}
        channels: Channels = {}
        size, pos = len(buf), len(MCAP_MAGIC)
        while pos < size:
            if size - pos < 9:
                self.found.damaged(path, f"ends at byte {pos} inside a record header (cut short)")
                return
            op, length = buf[pos], struct.unpack_from("<Q", buf, pos + 1)[0]
            body = Cursor(buf, pos + 9, pos + 9 + length) if pos + 9 + length <= size else None
            if op in (OP_FOOTER, OP_DATA_END) and body is not None:
                return  # the data section is over
            if body is None and op == OP_CHUNK:
                yield from self._cut_chunk(path, buf, pos, length, schemas, channels, topics)
                return
            try:
                if body is None or not 0 < op <= OP_MAX:
                    raise Broken("not a record" if body is not None else
                                 f"a record of {length} bytes runs past the end of the file")
                if op == OP_CHUNK:
                    records = chunk_records(body)
                    yield from self._records(path, f"chunk at byte {pos}", records, schemas,
                                             channels, topics)
                elif op in INNER_OPS:
                    yield from self._record(op, body, schemas, channels, topics)
                elif op == OP_METADATA:
                    self._metadata(body)
                pos += 9 + length
                continue
            except (Broken, struct.error) as exc:
                reason = str(exc)
            found = next_chunk(buf, pos + 1)
            if found is None:
                self.found.damaged(path, f"record at byte {pos}: {reason}; no valid record "
                                         "after it (cut short)")
                return
            self.found.damaged(path, f"record at byte {pos}: {reason}; {found - pos} bytes "
                                     f"skipped, reading on at byte {found}")
            pos = found

    def _cut_chunk(self, path: Path, buf: mmap.mmap | bytes, pos: int, length: int,
                   schemas: dict[int, str], channels: Channels,
                   topics: set[str] | None) -> Iterator[RawMessage]:
        """The last chunk of a file cut short: the records before the cut, if uncompressed."""
        size = len(buf)
        where = f"chunk at byte {pos}"
        try:
            rec = Cursor(buf, pos + 9, size)
            rec.take(8 + 8)
            declared, _ = rec.u64(), rec.u32()
            compression = rec.string()
            rec.u64()
        except (Broken, struct.error):
            self.found.damaged(path, f"{where}: cut short inside its header; nothing after it "
                                     "is read")
            return
        if compression:
            self.found.damaged(path, f"{where}: {compression} chunk cut short after "
                                     f"{size - pos} of {length + 9} bytes; its messages are lost")
            return
        self.found.damaged(path, f"{where}: cut short after {size - pos} of {length + 9} bytes; "
                                 "the messages before the cut are read")
        records = rec.take(min(declared, rec.remaining()))
        yield from self._records(path, where, (records, True), schemas, channels, topics)

    def _records(self, path: Path, where: str, records: tuple[memoryview, bool],
                 schemas: dict[int, str], channels: Channels,
                 topics: set[str] | None) -> Iterator[RawMessage]:
        data, crc_ok = records
        size, pos, count = len(data), 0, 0
        while pos < size:
            op, length = data[pos], (struct.unpack_from("<Q", data, pos + 1)[0]
                                     if size - pos >= 9 else -1)
            try:
                if length < 0 or pos + 9 + length > size or op not in INNER_OPS:
                    raise Broken("not a schema, channel or message record")
                yield from self._record(op, Cursor(data, pos + 9, pos + 9 + length), schemas,
                                        channels, topics)
                count += op == OP_MESSAGE
                pos += 9 + length
                continue
            except (Broken, struct.error) as exc:
                reason = str(exc)
            found = next_message(data, pos + 1, channels)
            lost = (found if found is not None else size) - pos
            self.found.damaged(path, f"{where}: {lost} bytes unreadable at offset {pos} of its "
                                     f"records ({reason})" + ("; reading on after them"
                                                              if found is not None else ""))
            if found is None:
                break
            pos = found
        if not crc_ok:
            self.found.damaged(path, f"{where}: checksum mismatch; its {count} messages were "
                                     "read but may be corrupt")

    def _record(self, op: int, rec: Cursor, schemas: dict[int, str], channels: Channels,
                topics: set[str] | None) -> Iterator[RawMessage]:
        if op == OP_SCHEMA:
            key, name = schema(rec)
            schemas[key] = name
        elif op == OP_CHANNEL:
            key, topic, msgtype, meta = channel(rec, schemas)
            channels[key] = (topic, msgtype)
            self.found.topic(topic, msgtype, meta.get("offered_qos_profiles"))
        elif op == OP_MESSAGE:
            channel_id = rec.u16()
            if channel_id not in channels:
                self._orphans += 1
                return
            rec.take(4)  # sequence
            t_ns = rec.u64()
            rec.take(8)  # publish time
            topic, msgtype = channels[channel_id]
            if topic and (topics is None or topic in topics):
                yield RawMessage(topic, msgtype, t_ns, bytes(rec.take(rec.remaining())))
