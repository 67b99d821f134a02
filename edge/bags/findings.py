"""What reading a bag's storage files found, shared by the per-storage readers: the damage (one
line per finding, naming the file and the place), the topics and their offered QoS."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Findings:
    damage: list[str] = field(default_factory=list)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> message type
    qos: dict[str, str] = field(default_factory=dict)  # topic -> offered_qos_profiles
    _logged: set[str] = field(default_factory=set)

    def damaged(self, path: Path, reason: str) -> None:
        """Note damage in ``path`` (once, however often the bag is read)."""
        text = f"{path.name}: {reason}"
        if text not in self.damage:
            self.damage.append(text)
        if text not in self._logged:
            self._logged.add(text)
            log.warning("damaged bag file %s", text)

    def topic(self, name: str, msgtype: str, qos: str | None = None) -> None:
        """A topic found (the first finding of its type and QoS is kept)."""
        self.topics.setdefault(name, msgtype)
        if qos is not None:
            self.qos.setdefault(name, qos)
