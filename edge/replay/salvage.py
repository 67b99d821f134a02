"""Read the intact part of a damaged rosbag2: a truncated or partly overwritten MCAP or sqlite3.

``rosbags`` refuses such bags outright: an MCAP file cut short has no footer or index ("File end
magic is invalid") and a truncated sqlite3 file is "malformed" before the first query. A
recording that stopped with the vehicle's power, or a copy that broke off, still holds hours of
good frames, so this reader walks the storage files record by record (MCAP) or row by row
(sqlite3) and stops at the first damage, saying where and why in :attr:`SalvageReader.damage`.

Messages come in file order, which is recording order for rosbag2 writers; metadata.yaml is not
needed (a crashed recorder often never wrote it). :func:`read_messages` reads a bag from its index
where it can and goes on with this reader where the index fails.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path

from edge.bags import RawMessage, iter_bag_messages

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
_OP_DATA_END = 0x0F
_RECORD_NAMES = {_OP_SCHEMA: "schema", _OP_CHANNEL: "channel", _OP_MESSAGE: "message",
                 _OP_CHUNK: "chunk"}
_READ_OPS = tuple(_RECORD_NAMES)
_SQLITE_MAGIC = b"SQLite format 3\x00"


class _Truncated(Exception):
    """A record runs past the end of the bytes that are there."""


class _Cursor:
    """Little-endian MCAP field reader over a bytes object."""

    def __init__(self, buf: bytes | memoryview, pos: int = 0) -> None:
        self.buf = memoryview(buf)
        self.pos = pos

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Truncated(f"needs {n} bytes at offset {self.pos}, {self.remaining()} left")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return bytes(self.take(self.u32())).decode("utf-8", errors="replace")


class SalvageReader:
    """Sequential reader of the storage files in a bag folder (or of one storage file)."""

    def __init__(self, bag: str | Path) -> None:
        bag = Path(bag)
        files = [bag] if bag.is_file() else sorted(bag.glob("*.mcap")) + sorted(bag.glob("*.db3"))
        if not files:
            raise ValueError(f"{bag}: no .mcap or .db3 storage files to read")
        self.files = files
        self.damage: list[str] = []
        self._topics: dict[str, str] = {}
        self._logged: set[str] = set()

    def topics(self) -> dict[str, str]:
        """Topic -> message type of every connection found before any damage (scans the bag)."""
        for _ in self.messages(topics=set()):
            pass
        return dict(sorted(self._topics.items()))

    def messages(self, topics: set[str] | None = None) -> Iterator[RawMessage]:
        """Every readable message (of ``topics``, if given), stopping each file at its damage."""
        self.damage = []
        for path in self.files:
            with path.open("rb") as f:
                head = f.read(16)
            if head.startswith(MCAP_MAGIC):
                yield from self._mcap(path, topics)
            elif head == _SQLITE_MAGIC:
                yield from self._sqlite(path, topics)
            else:
                self._damaged(path, "neither an MCAP nor an sqlite3 file")

    def _damaged(self, path: Path, reason: str) -> None:
        text = f"{path.name}: {reason}"
        self.damage.append(text)
        if text not in self._logged:  # every pass over the bag finds the same damage
            self._logged.add(text)
            log.warning("damaged bag file %s", text)

    # -- MCAP --------------------------------------------------------------------------------

    def _mcap(self, path: Path, topics: set[str] | None) -> Iterator[RawMessage]:
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        size = path.stat().st_size
        # Records are read one at a time (chunks are about 1 MiB): bags can be far larger than RAM.
        with path.open("rb") as f:
            f.seek(len(MCAP_MAGIC))
            while True:
                offset = f.tell()
                head = f.read(9)
                if not head:
                    self._damaged(path, f"ends at byte {offset} without an MCAP footer "
                                        "(recording cut short)")
                    return
                if len(head) < 9:
                    self._damaged(path, f"truncated record header at byte {offset}")
                    return
                op, length = head[0], struct.unpack("<Q", head[1:])[0]
                if op in (_OP_FOOTER, _OP_DATA_END):  # the data section is over
                    return
                available = size - f.tell()
                if op not in _READ_OPS:
                    if length > available:
                        self._damaged(path, f"record 0x{op:02x} at byte {offset} runs past the "
                                            "end of the file")
                        return
                    f.seek(length, 1)
                    continue
                body = f.read(min(length, available))
                try:
                    if op == _OP_CHUNK:
                        yield from self._mcap_chunk(path, offset, body, length, schemas,
                                                    channels, topics)
                    elif len(body) < length:
                        raise _Truncated(f"{len(body)} of {length} bytes present")
                    else:
                        yield from self._mcap_record(op, _Cursor(body), schemas, channels,
                                                     topics)
                except (_Truncated, struct.error) as exc:
                    self._damaged(path, f"{_RECORD_NAMES[op]} record at byte {offset}: {exc}; "
                                        "nothing after it is read")
                    return

    def _mcap_chunk(self, path: Path, offset: int, body: bytes, length: int,
                    schemas: dict[int, str], channels: dict[int, tuple[str, str]],
                    topics: set[str] | None) -> Iterator[RawMessage]:
        cur = _Cursor(body)
        cur.take(16)  # message start and end time
        size, crc = cur.u64(), cur.u32()
        compression = cur.string()
        stored = cur.u64()
        records = bytes(cur.take(min(stored, cur.remaining())))
        cut = len(body) < length
        if compression:
            if cut:
                raise _Truncated(f"{compression} chunk cut short; its messages are lost")
            try:
                from rosbags.rosbag2.storage_mcap import decompress
                records = decompress(records, compression, size, crc)
            except Exception as exc:  # whatever the codec says, the chunk is unreadable
                raise _Truncated(f"{compression} chunk does not decompress ({exc})") from exc
        elif not cut and crc and zlib.crc32(records) != crc:
            self._damaged(path, f"chunk at byte {offset}: checksum mismatch; its messages are "
                                "read but may be corrupt")
        inner = _Cursor(records)
        while inner.remaining():
            try:
                op = inner.take(1)[0]
                rec = _Cursor(inner.take(_Cursor(inner.take(8)).u64()))
            except _Truncated:
                # The records before the cut (or a corrupt length) are complete and yielded.
                raise _Truncated(f"chunk damaged or cut short after {inner.pos} of {size} "
                                 "bytes") from None
            yield from self._mcap_record(op, rec, schemas, channels, topics)
        if cut:
            raise _Truncated(f"chunk cut short after {len(records)} of {size} bytes")

    def _mcap_record(self, op: int, rec: _Cursor, schemas: dict[int, str],
                     channels: dict[int, tuple[str, str]],
                     topics: set[str] | None) -> Iterator[RawMessage]:
        if op == _OP_SCHEMA:
            key = rec.u16()
            schemas[key] = rec.string()
        elif op == _OP_CHANNEL:
            key, schema_id = rec.u16(), rec.u16()
            topic = rec.string()
            msgtype = schemas.get(schema_id, "")
            channels[key] = (topic, msgtype)
            self._topics[topic] = msgtype
        elif op == _OP_MESSAGE:
            channel_id = rec.u16()
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
            except sqlite3.DatabaseError as exc:
                self._damaged(path, f"topic table unreadable ({exc})")
                return
            by_id = {int(i): (str(name), str(kind)) for i, name, kind in rows}
            self._topics.update(dict(by_id.values()))
            wanted = [i for i, (name, _) in by_id.items() if topics is None or name in topics]
            if not wanted:
                return
            marks = ",".join("?" * len(wanted))
            # Row-id order is the write order and needs no index page, which may be lost.
            cursor = con.execute(f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id "
                                 f"IN ({marks}) ORDER BY id", wanted)
            count = 0
            try:
                for topic_id, t_ns, data in cursor:
                    name, kind = by_id[int(topic_id)]
                    count += 1
                    yield RawMessage(name, kind, int(t_ns), bytes(data))
            except sqlite3.DatabaseError as exc:
                self._damaged(path, f"unreadable after {count} messages ({exc})")

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


def read_messages(bag: Path, topics: Collection[str] | None, damage: list[str],
                  start_ns: int | None = None, stop_ns: int | None = None,
                  indexed: bool = True) -> Iterator[RawMessage]:
    """The messages of ``topics`` (all if None) in [start_ns, stop_ns) from the bag's index, or
    record by record up to the damage where the index cannot be read (``indexed`` False: known
    unreadable) or fails part-way; what was lost is appended to ``damage``.

    An indexed read that fails part-way (rosbags reads a whole chunk before yielding any of it)
    goes on record by record from the message after the last one yielded on each topic.
    """
    done: Counter[str] = Counter()  # messages yielded per topic by the indexed read
    if indexed:
        try:
            for msg in iter_bag_messages(bag, topics, start_ns, stop_ns):
                done[msg.topic] += 1
                yield msg
            return
        except Exception as exc:  # whatever a damaged file makes rosbags raise
            n = sum(done.values())
            damage.append((f"reading from the index failed after {n} messages" if n else
                           "the bag cannot be read from its index")
                          + f" ({exc}); reading its records in order up to the damage")
            log.warning("%s: %s", bag, damage[-1])
    salvage = SalvageReader(bag)
    seen: Counter[str] = Counter()
    try:
        for msg in salvage.messages(set(topics) if topics is not None else None):
            if (start_ns is not None and msg.t_ns < start_ns) or (stop_ns is not None
                                                                   and msg.t_ns >= stop_ns):
                continue
            seen[msg.topic] += 1
            if seen[msg.topic] > done[msg.topic]:
                yield msg
    finally:
        for item in salvage.damage:
            if item not in damage:
                damage.append(item)
