"""Read the storage files of a bag ourselves, using every part of a damaged file that survives.

``rosbags`` refuses damaged bags outright (an MCAP file cut short has no footer or index, a
truncated sqlite3 file is "malformed" before the first query) or stops at the first bad chunk. A
recording that stopped with the vehicle's power, or a copy that broke off, still holds hours of
good frames, so the files are read here, one reader per storage: :mod:`uwstego.bags.salvage_mcap`
(chunks by the summary's index, or record by record past damage) and
:mod:`uwstego.bags.salvage_sqlite` (rows in write order past damaged pages). A file is told by its
first bytes, not its name.

Every finding goes into :attr:`SalvageReader.damage` as one line naming the file and the place.
Messages come in file order, which is recording (log-time) order for rosbag2 writers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from uwstego.bags.findings import Findings
from uwstego.bags.layout import MCAP_MAGIC, SQLITE_MAGIC
from uwstego.bags.messages import RawMessage
from uwstego.bags.salvage_mcap import McapSalvage
from uwstego.bags.salvage_sqlite import Hint, SqliteSalvage


def _is_mcap(path: Path) -> bool:
    return path.suffix == ".mcap"


class SalvageReader:
    """Sequential reader of a bag's storage files; see the module text."""

    def __init__(self, files: list[Path], hints: Sequence[Hint] = ()) -> None:
        """``hints``: (topic, type, messages) that metadata.yaml lists; they tell sqlite3
        topics apart when the topic table is lost."""
        if not files:
            raise ValueError("no .mcap or .db3 storage files to read")
        self.files = files
        self.found = Findings()
        self.damage = self.found.damage  # the same list: it grows as reading goes
        self.qos = self.found.qos
        self._mcap = McapSalvage(self.found)
        self._sqlite = SqliteSalvage(self.found)
        self._sqlite.hints = hints

    @property
    def serialized_metadata(self) -> str | None:
        """rosbag2_bagfile_information as YAML, from an MCAP file's own copy (where found)."""
        return self._mcap.serialized_metadata

    def topics(self) -> dict[str, str]:
        """Topic -> message type of every connection that can be found (from the MCAP summary
        where it is intact, else by reading the files)."""
        if any(not _is_mcap(p) or self._mcap.index(p) is None for p in self.files):
            for _ in self.messages(topics=set()):
                pass
        return dict(sorted(self.found.topics.items()))

    def index_counts(self) -> dict[str, int] | None:
        """Messages per topic that the MCAP statistics promise (None: not every file has them)."""
        total: dict[str, int] = {}
        for path in self.files:
            index = self._mcap.index(path) if _is_mcap(path) else None
            if index is None or index.counts is None:
                return None
            for topic, n in index.counts.items():
                total[topic] = total.get(topic, 0) + n
        return total

    def span(self) -> tuple[int, int] | None:
        """(first, last + 1) log time from the chunk indexes, None where a file has none."""
        refs = []
        for path in self.files:
            index = self._mcap.index(path) if _is_mcap(path) else None
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
                self.found.damaged(path, f"cannot be read ({exc})")
                continue
            if head.startswith(MCAP_MAGIC):
                gen = self._mcap.messages(path, topics, start_ns, stop_ns)
            elif head == SQLITE_MAGIC:
                gen = self._sqlite.messages(path, topics)
            else:
                self.found.damaged(path, "neither an MCAP nor an sqlite3 file (damaged at its "
                                         "start)")
                continue
            for msg in gen:
                if (start_ns is None or msg.t_ns >= start_ns) and (stop_ns is None
                                                                   or msg.t_ns < stop_ns):
                    yield msg
