"""How a bag lies on disk: its folder, storage files and metadata, and the keys the project
keeps in that metadata.

A rosbag2 bag is a folder holding ``metadata.yaml`` and storage files (``.mcap`` or ``.db3``,
``.zstd`` when file-compressed); a synthetic dive folder holds its bag in ``bag/``. The project
records two facts in ``metadata.yaml``'s ``custom_data`` (rosbag2's free key/value store, kept by
the ``ros2 bag`` tools): which topics are ground truth and the class names of their label ids.
Only :class:`uwstego.bags.BagWriter` writes them and only :class:`uwstego.bags.Bag` reads them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from uwstego.contract import SYNTH_BAG_DIR, SYNTH_DIVE_FILE

METADATA_FILE = "metadata.yaml"
MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
_STORAGE_SUFFIXES = (".mcap", ".db3")
_COMPRESSED_SUFFIXES = tuple(f"{s}.zstd" for s in _STORAGE_SUFFIXES)

# custom_data keys: comma-separated ground-truth topics; JSON {label topic: [name of id 0, ...]}
LABEL_TOPICS_KEY = "uwstego.label_topics"
CLASS_NAMES_KEY = "uwstego.class_names"


def is_storage_file(path: Path) -> bool:
    """A storage file by its name (plain or file-compressed)."""
    return path.suffix in _STORAGE_SUFFIXES or path.name.endswith(_COMPRESSED_SUFFIXES)


def _describe_folder(path: Path) -> str:
    kinds: Counter[str] = Counter()
    folders = []
    for item in sorted(path.iterdir()):
        if item.is_dir():
            folders.append(item.name)
        else:
            kinds[item.suffix.lower() or item.name] += 1
    parts = [f"{n} {kind} file{'s' if n > 1 else ''}" for kind, n in kinds.most_common(4)]
    if folders:
        parts.append(f"folders {', '.join(folders[:5])}{' ...' if len(folders) > 5 else ''}")
    return ", ".join(parts) or "nothing (an empty folder)"


def resolve_bag_path(path: str | Path) -> Path:
    """The bag at ``path``: itself, or the ``bag/`` of a synthetic dive folder.

    Raises FileNotFoundError if nothing is there and a ValueError saying what was found where
    no bag is.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_dir() and (path / SYNTH_DIVE_FILE).is_file():
        if (path / SYNTH_BAG_DIR).is_dir():
            return path / SYNTH_BAG_DIR
        raise ValueError(f"{path} is a synthetic dive written without a bag (it has "
                         f"{SYNTH_DIVE_FILE} but no {SYNTH_BAG_DIR}/ folder); rerun "
                         "`uwstego synth` with --bag")
    if path.is_dir():
        if (path / METADATA_FILE).exists() or any(is_storage_file(p) for p in path.iterdir()):
            return path
        raise ValueError(f"{path} is not a bag: a rosbag2 folder holds {METADATA_FILE} and .mcap "
                         f"or .db3 files; this folder holds {_describe_folder(path)}")
    with path.open("rb") as f:
        head = f.read(16)
    if path.suffix == ".bag" or head.startswith(MCAP_MAGIC) or head == SQLITE_MAGIC:
        return path
    raise ValueError(f"{path} is not a bag: a {path.suffix or 'suffix-less'} file that is "
                     "neither a rosbag1 file nor MCAP/sqlite3 storage")
