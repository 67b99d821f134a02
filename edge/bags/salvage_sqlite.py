"""sqlite3 storage files read row by row, using every row that survives.

Rows come in row-id order (the write order; it needs no index page, which may be lost); past a
damaged page the table is searched again from the next row id that reads. A file shorter than its
header says is padded so that every row before the cut reads; a lost topic table is rebuilt from
the topics that metadata.yaml lists, where their counts and types tell them apart.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from uwstego.bags.findings import Findings
from uwstego.bags.messages import RawMessage, typestore

Row = tuple[int, int, int, bytes]  # id, topic id, log time, data
Hint = tuple[str, str, int]  # (topic, type, messages) that metadata.yaml lists


class SqliteSalvage:
    """The sqlite3 files of one bag; see the module text. Findings go into ``found``."""

    def __init__(self, found: Findings) -> None:
        self.found = found
        self.hints: Sequence[Hint] = ()

    def messages(self, path: Path, topics: set[str] | None) -> Iterator[RawMessage]:
        """The file's readable messages of ``topics`` (all if None), in row order."""
        with contextlib.ExitStack() as stack:
            db = self._readable(path, stack)
            con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
            stack.callback(con.close)
            try:
                rows = con.execute("SELECT id, name, type FROM topics").fetchall()
                if "offered_qos_profiles" in {r[1] for r in con.execute(
                        "PRAGMA table_info(topics)")}:
                    for name, qos in con.execute("SELECT name, offered_qos_profiles FROM topics"):
                        self.found.qos.setdefault(str(name), str(qos or ""))
            except sqlite3.DatabaseError as exc:
                rows = self._topics_from_hints(path, con, str(exc))
                if not rows:
                    return
            by_id = {int(i): (str(name), str(kind)) for i, name, kind in rows}
            for name, kind in by_id.values():
                self.found.topic(name, kind)
            wanted = [i for i, (name, _) in by_id.items() if topics is None or name in topics]
            if wanted:
                yield from self._rows(path, con, by_id, wanted)

    def _rows(self, path: Path, con: sqlite3.Connection, by_id: dict[int, tuple[str, str]],
              wanted: list[int]) -> Iterator[RawMessage]:
        """The rows of ``wanted`` topics in row-id order. Past a damaged page the table is
        searched again from the next row id that reads, so only the rows on damaged pages are
        lost."""
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
            resume = _next_readable_row(con, row) if row <= top else None
            self.found.damaged(path, f"message table unreadable at row {row} ({reason})" + (
                f"; reading on from row {resume + 1}" if resume is not None else ""))
            if resume is None:
                return
            last = resume

    def _topics_from_hints(self, path: Path, con: sqlite3.Connection,
                           why: str) -> list[tuple[int, str, str]]:
        """Without the topic table, tell the topics of the messages apart by :attr:`hints`: a
        topic id is given a topic when exactly one listed topic has its message count and a type
        whose CDR its first message round-trips."""
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
        self.found.damaged(path, lost + (f"; topics told apart by their count and type in "
                                         f"metadata.yaml ({told})" if rows else "")
                           + (f"; {unknown} messages cannot be attributed to a topic"
                              if unknown or not ids else ""))
        return rows

    def _readable(self, path: Path, stack: contextlib.ExitStack) -> Path:
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
        self.found.damaged(path, f"truncated: {actual} of {expected} bytes; reading the rows "
                                 "before the cut")
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


def _read_row(con: sqlite3.Connection, row: int) -> Row | tuple[()] | None:
    """Message row ``row`` (an empty tuple if there is none), None if it does not read."""
    try:
        found = con.execute("SELECT id, topic_id, timestamp, data FROM messages WHERE id = ?",
                            (row,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    return tuple(found) if found is not None else ()


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
