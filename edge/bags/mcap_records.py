"""The MCAP record format, read defensively: fields that run past their bytes or do not add up
raise :class:`Broken`, and the scans find the next plausible record after damage.

See https://mcap.dev/spec (v0): every record is an opcode byte, a little-endian u64 length and
its body; messages live in chunks, which carry their records (optionally compressed) and a CRC32.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from uwstego.errors import UwstegoError

OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x08, 0x0B, 0x0F
OP_METADATA, OP_METADATA_INDEX = 0x0C, 0x0D
OP_MAX = 0x10  # opcodes 0x01..0x10 are defined by MCAP v0
FOOTER_SIZE = 1 + 8 + 8 + 8 + 4
_MESSAGE_HEAD = 2 + 4 + 8 + 8
_CHUNK_HEAD = 8 + 8 + 8 + 4 + 4  # times, uncompressed size, crc, compression length
_COMPRESSIONS = ("", "zstd", "lz4")
INNER_OPS = (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE)  # the records a chunk holds

Buffer = bytes | memoryview | mmap.mmap


class Broken(UwstegoError):
    """A record or field runs past its bytes or does not make sense."""


class Cursor:
    """Little-endian MCAP field reader over a buffer."""

    def __init__(self, buf: Buffer, pos: int = 0, end: int | None = None) -> None:
        self.buf = memoryview(buf) if not isinstance(buf, memoryview) else buf
        self.pos = pos
        self.end = len(self.buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise Broken(f"needs {n} bytes at offset {self.pos}, {self.remaining()} left")
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
            raise Broken(f"not a string ({exc})") from exc

    def strings(self) -> dict[str, str]:
        length = self.u32()
        inner = Cursor(self.buf, self.pos, self.pos + length)
        if inner.end > self.end:
            raise Broken("map runs past its record")
        out = {}
        while inner.remaining():
            key = inner.string()
            out[key] = inner.string()
        self.pos = inner.end
        return out


def schema(rec: Cursor) -> tuple[int, str]:
    """A schema record: (id, message type)."""
    key = rec.u16()
    name = rec.string()
    rec.string()  # encoding
    rec.take(rec.u32())  # definition
    return key, name


def channel(rec: Cursor, schemas: dict[int, str]) -> tuple[int, str, str, dict[str, str]]:
    """A channel record: (id, topic, message type, metadata)."""
    key, schema_id = rec.u16(), rec.u16()
    topic = rec.string()
    rec.string()  # message encoding
    meta = rec.strings()
    return key, topic, schemas.get(schema_id, ""), meta


def chunk_header(rec: Cursor) -> tuple[int, int, int, int, str, int]:
    """start, end, uncompressed size, crc, compression, compressed size; checks they fit."""
    start, end, size, crc = rec.u64(), rec.u64(), rec.u64(), rec.u32()
    compression = rec.string()
    stored = rec.u64()
    if compression not in _COMPRESSIONS:
        raise Broken(f"unknown chunk compression {compression[:20]!r}")
    if start > end or stored != rec.remaining():
        raise Broken("chunk fields are inconsistent")
    return start, end, size, crc, compression, stored


def chunk_records(rec: Cursor) -> tuple[memoryview, bool]:
    """The records of a chunk record's body, decompressed, and whether its CRC matched (or was
    not stored)."""
    _, _, size, crc, compression, stored = chunk_header(rec)
    raw = rec.take(stored)
    if compression:
        from rosbags.rosbag2.storage_mcap import decompress

        try:
            return memoryview(decompress(bytes(raw), compression, size, crc)), True
        except Exception as exc:  # whatever the codec says, the chunk is unreadable
            raise Broken(f"{compression} chunk does not decompress ({exc})") from exc
    if size != stored:
        raise Broken(f"uncompressed chunk of {stored} bytes says it holds {size}")
    return raw, not crc or zlib.crc32(raw) == crc


def next_message(data: memoryview, pos: int, channels: dict[int, tuple[str, str]]) -> int | None:
    """The offset of the next plausible message record in a chunk's records, from ``pos``."""
    raw = data.obj if isinstance(data.obj, bytes) and len(data.obj) == len(data) else bytes(data)
    size = len(raw)
    while True:
        pos = raw.find(b"\x05", pos)
        if pos < 0 or size - pos < 9 + _MESSAGE_HEAD:
            return None
        length = struct.unpack_from("<Q", raw, pos + 1)[0]
        channel_id = struct.unpack_from("<H", raw, pos + 9)[0]
        if _MESSAGE_HEAD <= length <= size - pos - 9 and (channel_id in channels
                                                          or not channels):
            end = pos + 9 + length
            # The record after it must be one too, or the chunk must end there.
            if end == size or (size - end >= 9 and raw[end] in INNER_OPS
                               and struct.unpack_from("<Q", raw, end + 1)[0] <= size - end - 9):
                return pos
        pos += 1


def next_chunk(buf: Buffer, pos: int) -> int | None:
    """The offset of the next chunk record whose fields add up, from ``pos`` (scan mode)."""
    size = len(buf)
    while True:
        pos = buf.find(b"\x06", pos)
        if pos < 0 or size - pos < 9 + _CHUNK_HEAD + 8:
            return None
        length = struct.unpack_from("<Q", buf, pos + 1)[0]
        if length <= size - pos - 9:
            with contextlib.suppress(Broken, struct.error):
                chunk_header(Cursor(buf, pos + 9, pos + 9 + length))
                return pos
        pos += 1


@contextlib.contextmanager
def mapped(f: BinaryIO) -> Iterator[mmap.mmap | bytes]:
    """The whole file without reading it into memory (bags are often larger than RAM)."""
    fileno = f.fileno()
    if os.fstat(fileno).st_size == 0:
        yield b""
        return
    buf = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
    try:
        yield buf
    finally:
        with contextlib.suppress(BufferError):  # a view still held elsewhere: freed with it
            buf.close()
