from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer

from edge.bags import (
    IMAGE_TYPE,
    BagWriter,
    ReadStats,
    iter_bag_images,
    list_image_topics,
    typestore,
)

RAW, COMPRESSED, INFO, LABELS = ("/camera/image_raw", "/camera/image_raw/compressed",
                                 "/camera/camera_info", "/camera/labels_gt")
T0 = 1_700_000_000_000_000_000
DT = 100_000_000


def frames(n: int = 4, h: int = 32, w: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    # Flat 16x16 blocks (JPEG's chroma MCU) keep the JPEG error small.
    blocks = np.kron(base, np.ones((16, 16, 1), np.uint8))
    return [np.roll(blocks, 16 * i, axis=1) for i in range(n)]


def write_dive(path: Path, storage: str, images: list[np.ndarray]) -> None:
    h, w = images[0].shape[:2]
    with BagWriter(path, storage=storage) as bag:
        for i, rgb in enumerate(images):
            t = T0 + i * DT
            bag.write_image(RAW, t, rgb, "rgb8", stamp_ns=t - 5, frame_id="cam")
            bag.write_compressed(COMPRESSED, t, rgb, stamp_ns=t - 5, frame_id="cam", quality=95)
            bag.write_camera_info(INFO, t, w, h, [[50, 0, w / 2], [0, 50, h / 2], [0, 0, 1]])
            bag.write_image(LABELS, t, (rgb[..., 0] // 64).astype(np.uint8), "mono8")
            bag.write_float32_array("/scores", t, [0.5, float(i)], ["water", "sand"])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_raw_and_compressed(tmp_path: Path, storage: str) -> None:
    images = frames()
    bag = tmp_path / "dive"
    write_dive(bag, storage, images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dive"]  # staging folder is gone
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == storage
    assert list_image_topics(bag) == {
        RAW: IMAGE_TYPE, COMPRESSED: "sensor_msgs/msg/CompressedImage", LABELS: IMAGE_TYPE}

    raw = list(iter_bag_images(bag, RAW))
    assert [f.index for f in raw] == [0, 1, 2, 3]
    assert [f.t_ns for f in raw] == [T0 + i * DT for i in range(4)]
    assert [f.stamp_ns for f in raw] == [T0 + i * DT - 5 for i in range(4)]
    assert {f.frame_id for f in raw} == {"cam"}
    for got, want in zip(raw, images, strict=True):
        np.testing.assert_array_equal(got.rgb, want)

    for i, got in enumerate(iter_bag_images(bag, COMPRESSED)):
        errors = [np.abs(got.rgb.astype(int) - im).mean() for im in images]
        assert int(np.argmin(errors)) == i and errors[i] < 6

    labels = next(iter_bag_images(bag, LABELS))
    np.testing.assert_array_equal(labels.rgb[..., 2], images[0][..., 0] // 64)

    with AnyReader([bag]) as reader:
        conns = {c.topic: c for c in reader.connections}
        _, _, raw_info = next(reader.messages(connections=[conns[INFO]]))
        info = reader.deserialize(raw_info, conns[INFO].msgtype)
        assert (info.width, info.height, info.k[0], info.p[5]) == (96, 32, 50.0, 50.0)
        _, _, raw_scores = next(reader.messages(connections=[conns["/scores"]]))
        scores = reader.deserialize(raw_scores, conns["/scores"].msgtype)
        assert [d.label for d in scores.layout.dim] == ["water", "sand"]
        np.testing.assert_allclose(scores.data, [0.5, 0.0])


def test_every_and_time_window(tmp_path: Path) -> None:
    write_dive(tmp_path / "b", "mcap", frames(6))
    got = list(iter_bag_images(tmp_path / "b", RAW, every=2))
    assert [f.index for f in got] == [0, 2, 4]
    window = list(iter_bag_images(tmp_path / "b", RAW, start_ns=T0 + DT, stop_ns=T0 + 4 * DT))
    assert [f.t_ns for f in window] == [T0 + DT, T0 + 2 * DT, T0 + 3 * DT]
    with pytest.raises(ValueError, match="every"):
        next(iter_bag_images(tmp_path / "b", RAW, every=0))


def test_wrong_topic_lists_image_topics(tmp_path: Path) -> None:
    write_dive(tmp_path / "b", "mcap", frames(1))
    for topic in ("/nope", INFO):
        with pytest.raises(ValueError) as err:
            next(iter_bag_images(tmp_path / "b", topic))
        assert RAW in str(err.value) and COMPRESSED in str(err.value)
        assert INFO not in str(err.value).split("image topics:")[1]


def test_missing_and_non_bag_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list_image_topics(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a readable"):
        list_image_topics(tmp_path / "empty")


def test_bad_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    images = frames(3)
    store = typestore()
    t = store.types
    with BagWriter(tmp_path / "b") as bag:
        hdr = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                       frame_id="cam")
        bag.write_image(RAW, T0, images[0])
        truncated = t[IMAGE_TYPE](header=hdr, height=32, width=96, encoding="rgb8",
                                  is_bigendian=0, step=288, data=images[1].reshape(-1)[:-50])
        bag.write_message(RAW, T0 + DT, IMAGE_TYPE, truncated)
        bag.write_image(RAW, T0 + 2 * DT, images[2])
        bag.write_compressed(COMPRESSED, T0, images[0])
        corrupt = t["sensor_msgs/msg/CompressedImage"](
            header=hdr, format="jpeg", data=np.frombuffer(b"\xff\xd8garbage\xff\xd9", np.uint8))
        bag.write_message(COMPRESSED, T0 + DT, "sensor_msgs/msg/CompressedImage", corrupt)
    stats = ReadStats()
    got = list(iter_bag_images(tmp_path / "b", RAW, stats=stats))
    assert [f.index for f in got] == [0, 2]
    assert (stats.read, stats.yielded, stats.skipped) == (3, 2, 1)
    assert any("truncated rgb8" in r for r in stats.reasons)
    stats = ReadStats()
    assert len(list(iter_bag_images(tmp_path / "b", COMPRESSED, stats=stats))) == 1
    assert stats.skipped == 1 and any("corrupt" in r for r in stats.reasons)


def test_undeserialisable_message_is_skipped(tmp_path: Path) -> None:
    store = typestore()
    image = frames(1)[0]
    with Writer(tmp_path / "b", version=8) as bag:
        conn = bag.add_connection(RAW, IMAGE_TYPE, typestore=store)
        bag.write(conn, T0, b"\x00\x01\x00\x00\x07")  # CDR header then nothing
        with BagWriter(tmp_path / "good") as good:
            good.write_image(RAW, T0, image)
        with AnyReader([tmp_path / "good"]) as reader:
            _, _, raw = next(reader.messages())
        bag.write(conn, T0 + DT, raw)
    stats = ReadStats()
    got = list(iter_bag_images(tmp_path / "b", RAW, stats=stats))
    assert [f.index for f in got] == [1] and stats.skipped == 1
    assert "undeserialisable" in next(iter(stats.reasons))


def test_interrupted_write_keeps_a_valid_partial_bag(tmp_path: Path) -> None:
    images = frames(3)
    with pytest.raises(KeyboardInterrupt), BagWriter(tmp_path / "b", storage="sqlite3") as bag:
        for i, rgb in enumerate(images):
            if i == 2:
                raise KeyboardInterrupt
            bag.write_image(RAW, T0 + i * DT, rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert len(list(iter_bag_images(tmp_path / "b", RAW))) == 2


def test_writer_refuses_existing_path_and_bad_arrays(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    with pytest.raises(FileExistsError), BagWriter(tmp_path / "b"):
        pass
    with pytest.raises(ValueError, match="storage"):
        BagWriter(tmp_path / "c", storage="rosbag1")
    with BagWriter(tmp_path / "c") as bag:
        with pytest.raises(ValueError, match="uint8 array of HxWx3"):
            bag.write_image(RAW, T0, np.zeros((4, 4), np.uint8), "rgb8")
        with pytest.raises(ValueError, match="encodings"):
            bag.write_image(RAW, T0, np.zeros((4, 4), np.uint8), "yuv422")
        with pytest.raises(ValueError, match="labels"):
            bag.write_float32_array("/x", T0, [1.0], ["a", "b"])
        bag.write_image(RAW, T0, np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000, "mono16")
    got = next(iter_bag_images(tmp_path / "c", RAW))
    np.testing.assert_array_equal(got.rgb[0, :, 0], np.round(np.arange(4) * 5000 / 257))


def humbleize(bag: Path) -> None:
    """Rewrite a rosbags sqlite3 bag into Humble's layout: metadata v5, schema 3, no msgdefs."""
    db = bag / f"{bag.name}.db3"
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE message_definitions")
        con.execute("ALTER TABLE topics DROP COLUMN type_description_hash")
        con.execute("UPDATE schema SET schema_version = 3, ros_distro = 'humble'")
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    info["version"] = 5
    for key in ("custom_data", "ros_distro"):
        info.pop(key, None)
    for topic in info["topics_with_message_count"]:
        topic["topic_metadata"].pop("type_description_hash")
    meta_path.write_text(yaml.safe_dump(meta))


def test_humble_v5_sqlite_bag(tmp_path: Path) -> None:
    images = frames(2)
    bag = tmp_path / "humble"
    write_dive(bag, "sqlite3", images)
    humbleize(bag)
    with AnyReader([bag], default_typestore=typestore()) as reader:
        assert all(not c.msgdef.data for c in reader.connections)  # really no definitions
    got = list(iter_bag_images(bag, RAW))
    assert len(got) == 2
    np.testing.assert_array_equal(got[1].rgb, images[1])
