from __future__ import annotations

import dataclasses
import sqlite3
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer

from uwstego.bags import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagWriter,
    ReadStats,
    bag_info,
    iter_bag_images,
    iter_bag_messages,
    typestore,
)
from uwstego.coverage import SEPARATOR

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
            bag.write_coverage("/scores", t, [0.5, float(i)], ["water", "sand"])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_raw_and_compressed(tmp_path: Path, storage: str) -> None:
    images = frames()
    bag = tmp_path / "dive"
    write_dive(bag, storage, images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dive"]  # staging folder is gone
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == storage
    assert bag_info(bag).image_topics == {
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
        (dim,) = scores.layout.dim  # the node's ~/coverage layout
        assert dim.label.split(SEPARATOR) == ["water", "sand"] and dim.size == 2
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
        bag_info(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"is not a bag: .* holds nothing"):
        bag_info(tmp_path / "empty")


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
        with pytest.raises(ValueError, match="class names"):
            bag.write_coverage("/x", T0, [1.0], ["a", "b"])
        with pytest.raises(ValueError, match="rename the class"):
            bag.write_coverage("/x", T0, [1.0, 0.0], ["sand", "rock, boulder"])
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


def plain(value: Any) -> Any:
    """A message as nested dicts and lists, to compare decoded fields."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def stored(bag: Path, topics: tuple[str, ...]) -> list[tuple[str, str, int, bytes]]:
    """(topic, type, log time, bytes) of every message on ``topics``, read with rosbags alone."""
    with AnyReader([bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages(conns)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_info_and_a_byte_for_byte_copy(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "dive"
    write_dive(bag, storage, frames(3))
    info = bag_info(bag)
    assert (info.storage, info.start_ns, info.duration_ns) == (storage, T0, 2 * DT + 1)
    assert info.counts == {RAW: 3, COMPRESSED: 3, INFO: 3, LABELS: 3, "/scores": 3}
    assert info.topics[INFO] == CAMERA_INFO_TYPE
    assert all(f.raw is None for f in iter_bag_images(bag, RAW))  # only kept when asked

    copy = tmp_path / "copy"
    with BagWriter(copy) as out:
        for topic in (RAW, COMPRESSED):
            for f in iter_bag_images(bag, topic, keep_raw=True):
                assert f.raw is not None
                out.write_raw(topic, f.t_ns, f.msgtype, f.raw)
        for msg in iter_bag_messages(bag, [INFO]):
            out.write_raw(msg.topic, msg.t_ns, msg.msgtype, msg.data)
        with pytest.raises(ValueError, match="not in the typestore"):
            out.write_raw("/x", T0, "nope_msgs/msg/Nope", b"\x00\x01\x00\x00")
    topics = (RAW, COMPRESSED, INFO)
    original, copied = sorted(stored(bag, topics)), sorted(stored(copy, topics))
    assert copied == original  # topic, type, log time and the bytes themselves
    store = typestore()
    for (_, msgtype, _, a), (_, _, _, b) in zip(original, copied, strict=True):
        assert plain(store.deserialize_cdr(b, msgtype)) == plain(store.deserialize_cdr(a, msgtype))
    assert {m for _, m, _, _ in copied} == {IMAGE_TYPE, COMPRESSED_TYPE, CAMERA_INFO_TYPE}


def test_unreadable_bags_raise_value_errors_naming_bag_and_problem(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "yaml"
    write_dive(bad_yaml, "mcap", frames(1))
    (bad_yaml / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n  broken")
    cut = tmp_path / "cut"
    write_dive(cut, "mcap", frames(2))
    storage = next(cut.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[:-100])
    for bag, problem in ((bad_yaml, "Could not load YAML"), (cut, "File end magic")):
        for call in (bag_info, lambda b: next(iter_bag_images(b, RAW)),
                     lambda b: next(iter_bag_messages(b))):
            with pytest.raises(ValueError, match=problem) as err:
                call(bag)
            assert str(bag) in str(err.value)


def test_storage_failing_part_way_raises_a_value_error_after_the_good_frames(
        tmp_path: Path) -> None:
    bag = tmp_path / "b"
    with BagWriter(bag, storage="sqlite3") as w:
        for i in range(6):
            w.write_image(RAW, T0 + i * DT, np.full((32, 96, 3), 10 + i, np.uint8))
    db = next(bag.glob("*.db3"))
    data = bytearray(db.read_bytes())
    page = struct.unpack(">H", data[16:18])[0]
    # Frame 4's pixels overflow into pages that start with the next page's number: break it.
    k = data.find(bytes([14]) * (page - 8)) // page
    data[k * page:k * page + 4] = b"\xff" * 4
    db.write_bytes(bytes(data))
    got = []
    with pytest.raises(ValueError, match="reading failed after 4 messages") as err:
        for f in iter_bag_images(bag, RAW):
            got.append(f.index)
    assert got == [0, 1, 2, 3] and str(bag) in str(err.value)


def test_rosbag1_messages_come_out_as_ros2_cdr(tmp_path: Path) -> None:
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores, get_typestore

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    t = ros1.types
    image = frames(1)[0]
    header = t["std_msgs/msg/Header"](seq=7, stamp=t["builtin_interfaces/msg/Time"](
        sec=5, nanosec=9), frame_id="cam")
    k = np.arange(9, dtype=np.float64)
    info = t[CAMERA_INFO_TYPE](
        header=header, height=32, width=96, distortion_model="plumb_bob", D=np.zeros(5), K=k,
        R=np.eye(3).ravel(), P=np.zeros(12), binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False))
    bag = tmp_path / "old.bag"
    with Writer1(bag) as w:
        conn = w.add_connection(RAW, IMAGE_TYPE, typestore=ros1)
        w.write(conn, T0, ros1.serialize_ros1(t[IMAGE_TYPE](
            header=header, height=32, width=96, encoding="rgb8", is_bigendian=0, step=288,
            data=image.reshape(-1)), IMAGE_TYPE))
        conn = w.add_connection(INFO, CAMERA_INFO_TYPE, typestore=ros1)
        w.write(conn, T0, ros1.serialize_ros1(info, CAMERA_INFO_TYPE))
    assert bag_info(bag).storage == "rosbag1"
    frame = next(iter_bag_images(bag, RAW, keep_raw=True))
    np.testing.assert_array_equal(frame.rgb, image)
    assert (frame.stamp_ns, frame.frame_id) == (5_000_000_009, "cam")
    assert frame.raw is not None
    msg = typestore().deserialize_cdr(frame.raw, frame.msgtype)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (5, 9, "cam")
    np.testing.assert_array_equal(msg.data, image.reshape(-1))
    (cdr,) = iter_bag_messages(bag, [INFO])
    np.testing.assert_array_equal(typestore().deserialize_cdr(cdr.data, cdr.msgtype).k, k)


def test_the_bags_package_has_no_import_circle() -> None:
    """Every import between the modules of edge/bags (type-only ones too) points one way."""
    import ast

    folder = Path(__file__).resolve().parents[1] / "edge" / "bags"
    graph: dict[str, set[str]] = {}
    for source in folder.glob("*.py"):
        if source.name == "__init__.py":  # the package's front, importing every module
            continue
        names = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("uwstego.bags."):
                names.add(node.module.rsplit(".", 1)[1])
        graph[source.stem] = names

    def reaches(start: str, seen: tuple[str, ...]) -> None:
        for name in graph.get(start, ()):
            assert name not in seen, f"import circle: {' -> '.join((*seen, name))}"
            reaches(name, (*seen, name))

    for module in graph:
        reaches(module, (module,))
