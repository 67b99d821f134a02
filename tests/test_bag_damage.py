"""Damaged bags read through uwstego.bags.open_bag: every frame outside the damage, the loss
reported
per topic, never a traceback. Real rosbag2 files, written with rosbags (through BagWriter, which
stores chunk CRCs, and with rosbags' own Writer for compressed storage, which does not).

Each case prints ``DAMAGE <case>: intact <n> read <m> of <total>`` (``pytest -s``): the frames
outside the damaged region and the frames read.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

from uwstego.bags import IMAGE_TYPE, BagWriter, open_bag, typestore

RAW, INFO = "/camera/image_raw", "/camera/camera_info"
T0, DT = 1_700_000_000_000_000_000, 100_000_000
N = 48  # 48 frames of 57.6 kB: three 1 MiB chunks
SIZE = (160, 120)


def images(n: int = N) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8) for _ in range(n)]


def write_dive(path: Path, storage: str = "mcap", n: int = N) -> Path:
    with BagWriter(path, storage=storage) as bag:
        for i, rgb in enumerate(images(n)):
            t = T0 + i * DT
            bag.write_camera_info(INFO, t - 1, SIZE[0], SIZE[1], np.eye(3))
            bag.write_image(RAW, t, rgb, "rgb8", stamp_ns=t)
    return path


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def chunks(data: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, record length, first, last log time) of every chunk record of an MCAP file."""
    out, pos = [], 8
    while pos + 9 <= len(data):
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op == 0x06:
            t0, t1 = struct.unpack_from("<QQ", data, pos + 9)
            out.append((pos, 9 + length, t0, t1))
        if op == 0x0F:
            break
        pos += 9 + length
    return out


def record_spans(data: bytes, n: int = N) -> list[tuple[int, int]]:
    """(start, end) bytes of each frame's message record (uncompressed chunks)."""
    spans = []
    for i in range(n):
        t = struct.pack("<Q", T0 + i * DT)
        start = data.find(t + t) - 15
        assert data[start] == 0x05
        spans.append((start, start + 9 + struct.unpack_from("<Q", data, start + 1)[0]))
    return spans


def read_frames(bag: Path) -> tuple[dict[int, np.ndarray], list[str]]:
    opened = open_bag(bag)
    got = {(f.t_ns - T0) // DT: f.rgb for f in opened.images(RAW)}
    return got, opened.damage


def check(case: str, bag: Path, intact: set[int], lost_reported: bool = True) -> list[str]:
    """Every intact frame read unchanged; the shortfall reported on the camera topic."""
    got, damage = read_frames(bag)
    reference = images()
    print(f"DAMAGE {case}: intact {len(intact)} read {len(got)} of {N}")
    assert intact <= set(got), f"{case}: frames {sorted(intact - set(got))} not read"
    for i in intact:
        np.testing.assert_array_equal(got[i], reference[i])
    assert damage, f"{case}: no damage reported"
    if lost_reported and len(got) < N:
        assert any(d.startswith(f"{RAW}: the index lists {N} messages, {len(got)} were read")
                   for d in damage), damage
    return damage


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dive(tmp_path_factory.mktemp("orig") / "dive")


def damaged(original: Path, tmp_path: Path) -> tuple[Path, Path, bytearray]:
    bag = tmp_path / "dive"
    shutil.copytree(original, bag)
    store = storage_file(bag)
    return bag, store, bytearray(store.read_bytes())


def test_intact_bag_reports_nothing(original: Path) -> None:
    got, damage = read_frames(original)
    assert sorted(got) == list(range(N)) and damage == []
    assert len(chunks(storage_file(original).read_bytes())) >= 3


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_zeroed_chunk_costs_only_its_frames(original: Path, tmp_path: Path, where: str) -> None:
    bag, store, data = damaged(original, tmp_path)
    found = chunks(bytes(data))
    offset, length, t0, t1 = found[{"start": 0, "middle": len(found) // 2, "end": -1}[where]]
    data[offset:offset + length] = bytes(length)
    store.write_bytes(bytes(data))
    intact = {i for i in range(N) if not t0 <= T0 + i * DT <= t1}
    damage = check(f"chunk zeroed at the {where}", bag, intact)
    assert any("skipped, reading on with the next chunk" in d for d in damage)
    got, _ = read_frames(bag)
    assert set(got) == intact  # and nothing of the zeroed chunk comes back


def test_bytes_zeroed_inside_a_chunk(original: Path, tmp_path: Path) -> None:
    bag, store, data = damaged(original, tmp_path)
    spans = record_spans(bytes(data))
    start = spans[20][1] - 3000  # the end of frame 20's pixels and the head of frame 21
    stop = spans[21][0] + 200
    data[start:stop] = bytes(stop - start)
    store.write_bytes(bytes(data))
    intact = {i for i, (a, b) in enumerate(spans) if b <= start or a >= stop}
    damage = check("bytes zeroed inside a chunk", bag, intact)
    assert any("checksum mismatch" in d for d in damage)  # frame 20 is read, but corrupt


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.2, 0.5, 0.75, 0.999])
def test_cut_bag_reads_every_frame_before_the_cut(original: Path, tmp_path: Path,
                                                  fraction: float) -> None:
    bag, store, data = damaged(original, tmp_path)
    data_end = chunks(bytes(data))[-1]
    cut = 8 if fraction == 0.0 else int(len(data) * fraction)
    spans = record_spans(bytes(data))
    store.write_bytes(bytes(data[:cut]))
    intact = {i for i, (_, end) in enumerate(spans) if end <= cut}
    if cut >= data_end[0] + data_end[1]:
        assert intact == set(range(N))
    damage = check(f"cut at byte {cut} of {len(data)}", bag, intact)
    assert any("no MCAP footer" in d for d in damage)


def test_compressed_storage_with_a_zeroed_chunk(tmp_path: Path) -> None:
    bag = tmp_path / "zstd"
    store = typestore()
    writer = Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection(RAW, IMAGE_TYPE, typestore=store)
        with BagWriter(tmp_path / "plain") as plain:  # the same messages, for their bytes
            for i, rgb in enumerate(images()):
                plain.write_image(RAW, T0 + i * DT, rgb, "rgb8", stamp_ns=T0 + i * DT)
        for msg in open_bag(tmp_path / "plain").messages():
            writer.write(conn, msg.t_ns, msg.data)
    got, damage = read_frames(bag)
    assert sorted(got) == list(range(N)) and not damage
    data = bytearray(storage_file(bag).read_bytes())
    found = chunks(bytes(data))
    offset, _, t0, t1 = found[len(found) // 2]
    data[offset + 60:offset + 160] = bytes(100)  # inside the compressed records
    storage_file(bag).write_bytes(bytes(data))
    intact = {i for i in range(N) if not t0 <= T0 + i * DT <= t1}
    damage = check("zstd chunk damaged", bag, intact)
    assert any("does not decompress" in d for d in damage)


@pytest.mark.parametrize("mode", [CompressionMode.FILE, CompressionMode.MESSAGE])
def test_file_and_message_compressed_bags_read(tmp_path: Path, mode: CompressionMode) -> None:
    with BagWriter(tmp_path / "plain") as plain:
        for i, rgb in enumerate(images(6)):
            plain.write_image(RAW, T0 + i * DT, rgb, "rgb8", stamp_ns=T0 + i * DT)
    writer = Writer(tmp_path / "c", version=8, storage_plugin=StoragePlugin.SQLITE3)
    writer.set_compression(mode, CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection(RAW, IMAGE_TYPE, typestore=typestore())
        for msg in open_bag(tmp_path / "plain").messages():
            writer.write(conn, msg.t_ns, msg.data)
    opened = open_bag(tmp_path / "c")
    frames = list(opened.images(RAW))
    assert not opened.damage
    for frame, ref in zip(frames, images(6), strict=True):
        np.testing.assert_array_equal(frame.rgb, ref)


@pytest.mark.parametrize("table", ["messages", "topics", "metadata", "message_definitions"])
def test_sqlite_bag_with_a_table_dropped(tmp_path: Path, table: str) -> None:
    bag = write_dive(tmp_path / "dive", "sqlite3")
    con = sqlite3.connect(storage_file(bag))
    con.execute(f"DROP TABLE {table}")
    con.commit()
    con.close()
    holds_frames = table != "messages"
    got, damage = read_frames(bag)
    intact = set(range(N)) if holds_frames else set()
    print(f"DAMAGE sqlite3 table {table} dropped: intact {len(intact)} read {len(got)} of {N}")
    assert set(got) == intact
    reference = images()
    for i in intact:
        np.testing.assert_array_equal(got[i], reference[i])
    if table == "topics":  # told apart by the counts and types metadata.yaml lists
        assert any("topics told apart by their count and type" in d for d in damage), damage
    elif holds_frames:
        assert not damage  # nothing the frames need was lost
    else:
        assert any(f"{RAW}: the index lists {N} messages, 0 were read" in d for d in damage)
        assert any(table in d for d in damage)


def test_sqlite_bag_cut_short(tmp_path: Path) -> None:
    bag = write_dive(tmp_path / "dive", "sqlite3")
    store = storage_file(bag)
    data = store.read_bytes()
    store.write_bytes(data[:len(data) // 2])
    got, damage = read_frames(bag)
    print(f"DAMAGE sqlite3 cut at half: read {len(got)} of {N}")
    assert 0 < len(got) < N and sorted(got) == list(range(len(got)))
    assert any("truncated" in d for d in damage)
    assert any(f"{RAW}: the index lists {N} messages, {len(got)} were read" in d for d in damage)


def test_missing_metadata_and_storage_only(original: Path, tmp_path: Path) -> None:
    bag, _, _ = damaged(original, tmp_path)
    (bag / "metadata.yaml").unlink()
    opened = open_bag(bag)
    assert opened.topics[RAW] == IMAGE_TYPE and opened.counts == {RAW: N, INFO: N}
    assert len(list(opened.images(RAW))) == N
    assert any("metadata.yaml is missing" in d for d in opened.damage)
    assert "the metadata was taken from the copy inside the MCAP file" in opened.damage


def test_training_reads_past_the_same_damage_and_reports_it(original: Path,
                                                           tmp_path: Path) -> None:
    from uwstego.training.data.sources import ReadReport, RosBag

    bag, store, data = damaged(original, tmp_path)
    offset, length, t0, t1 = chunks(bytes(data))[1]
    data[offset:offset + length] = bytes(length)
    store.write_bytes(bytes(data))
    report = ReadReport()
    got = {(f.ref.t_ns - T0) // DT for f in RosBag(bag).frames(report)}
    intact = {i for i in range(N) if not t0 <= T0 + i * DT <= t1}
    print(f"DAMAGE training source, chunk 2 zeroed: intact {len(intact)} read {len(got)} of {N}")
    assert got == intact and report.seen == len(intact)
    reasons = [e["reason"] for e in report.skipped]
    assert any(f"{RAW}: the index lists {N} messages, {len(intact)} were read" in r
               for r in reasons), reasons


def test_sqlite_bag_with_a_page_overwritten_reads_on_past_it(tmp_path: Path) -> None:
    bag = write_dive(tmp_path / "dive", "sqlite3", n=12)
    db = storage_file(bag)
    data = bytearray(db.read_bytes())
    page = struct.unpack(">H", data[16:18])[0]
    # A page holding part of frame 5's pixels: overflow pages start with the next page's number.
    pixels = images(12)[5].tobytes()
    k = data.find(pixels[page * 3:page * 3 + 64]) // page
    data[k * page:k * page + 4] = b"\xff" * 4
    db.write_bytes(bytes(data))
    opened = open_bag(bag)
    got = {(f.t_ns - T0) // DT: f.rgb for f in opened.images(RAW)}
    print(f"DAMAGE sqlite3 page overwritten: intact 11 read {len(got)} of 12")
    assert set(got) == set(range(12)) - {5}
    for i, rgb in got.items():
        np.testing.assert_array_equal(rgb, images(12)[i])
    assert any("reading on from row" in d for d in opened.damage), opened.damage
    assert any(f"{RAW}: the index lists 12 messages, 11 were read" in d for d in opened.damage)
