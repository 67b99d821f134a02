"""BagWriter on real rosbag2 files: written from another thread, real offered_qos_profiles, CRCs,
nothing left behind by a failed or killed run; the camera-topic rule; synth dive folders."""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime as T
from rosbags.rosbag2 import StoragePlugin, Writer

from tests.support.media import scene
from uwstego.bags import (
    IMAGE_TYPE,
    BagWriter,
    camera_topics,
    choose_camera_topic,
    open_bag,
    typestore,
)
from uwstego.bags.topics import why_not_camera
from uwstego.contract import CAMERA_INFO_TOPIC, IMAGE_TOPIC, LABELS_GT_TOPIC

T0, DT = 1_700_000_000_000_000_000, 100_000_000
REPO = Path(__file__).resolve().parents[1]
QOS_KEYS = {"history", "depth", "reliability", "durability", "deadline", "lifespan",
            "liveliness", "liveliness_lease_duration", "avoid_ros_namespace_conventions"}
# What a camera driver might have offered when the input was recorded.
RECORDED = Qos(QosHistory.KEEP_LAST, 7, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               T(0, 0), T(0, 0), QosLiveliness.AUTOMATIC, T(0, 0), False)


def offered(bag: Path) -> dict[str, list[dict]]:
    """topic -> offered_qos_profiles of metadata.yaml, parsed as YAML (as Humble does)."""
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    out = {}
    for item in meta["topics_with_message_count"]:
        text = item["topic_metadata"]["offered_qos_profiles"]
        assert isinstance(text, str) and text, item
        out[item["topic_metadata"]["name"]] = yaml.safe_load(text)
    return out


def test_written_from_another_thread_and_closed_there(tmp_path: Path) -> None:
    for storage in ("sqlite3", "mcap"):
        bag = tmp_path / storage
        writer = BagWriter(bag, storage=storage).__enter__()  # opened here, as replay does

        def work(w: BagWriter = writer) -> None:
            for i in range(3):
                w.write_image(IMAGE_TOPIC, T0 + i * DT, scene(i))
            w.__exit__(None, None, None)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert len(list(open_bag(bag).images(IMAGE_TOPIC))) == 3


def test_offered_qos_profiles_by_kind_and_copied(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b", offered_qos={"/copied": [RECORDED]}) as w:
        w.write_image(IMAGE_TOPIC, T0, scene(0))
        w.write_camera_info(CAMERA_INFO_TOPIC, T0, 80, 64, np.eye(3))
        w.write_coverage("/coverage", T0, [1.0], ["a"])
        w.write_image("/copied", T0, scene(1))
    profiles = offered(tmp_path / "b")
    for topic, (reliability, depth) in {IMAGE_TOPIC: (2, 5), CAMERA_INFO_TOPIC: (2, 5),
                                        "/coverage": (1, 10), "/copied": (1, 7)}.items():
        (profile,) = profiles[topic]
        assert set(profile) == QOS_KEYS
        assert (profile["reliability"], profile["depth"], profile["history"]) == (
            reliability, depth, 1)
    assert profiles["/copied"][0]["durability"] == 1  # transient local, as recorded


def test_mcap_chunks_carry_their_crc(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b") as w:
        for i in range(30):
            w.write_image(IMAGE_TOPIC, T0 + i * DT, np.full((120, 160, 3), i, np.uint8))
    data = next((tmp_path / "b").glob("*.mcap")).read_bytes()
    pos, crcs = 8, 0
    while data[pos] != 0x0F:
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op == 0x06:
            size, crc = struct.unpack_from("<QI", data, pos + 25)
            n = struct.unpack_from("<I", data, pos + 37)[0]  # compression string length
            stored = struct.unpack_from("<Q", data, pos + 41 + n)[0]
            records = data[pos + 49 + n:pos + 49 + n + stored]
            assert crc != 0 and zlib.crc32(records) == crc and len(records) == size
            crcs += 1
        pos += 9 + length
    assert crcs >= 2
    with AnyReader([tmp_path / "b"], default_typestore=typestore()) as reader:
        assert sum(1 for _ in reader.messages()) == 30  # rosbags checks the CRCs and agrees


def test_failure_before_the_first_message_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BagWriter(tmp_path / "b", storage="sqlite3"):
        raise RuntimeError("model failed to load")
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_leaves_staging_that_the_next_run_removes(tmp_path: Path, caplog) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from uwstego.bags import BagWriter
        with BagWriter({str(tmp_path / 'b')!r}, storage="sqlite3") as w:
            for i in range(1000):
                w.write_image("/camera/image_raw", {T0} + i, np.zeros((8, 8, 3), np.uint8))
                if i == 5:
                    print("writing", flush=True)
                time.sleep(0.01)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = sorted(p.name for p in tmp_path.iterdir())  # its claim on the path, and its bag
    staging = [n for n in left if n.endswith(".partial")]
    assert len(left) == 2 and ".b.lock" in left and len(staging) == 1
    with caplog.at_level(logging.WARNING), BagWriter(tmp_path / "b", storage="sqlite3") as w:
        w.write_image(IMAGE_TOPIC, T0, scene(0))
    assert "was killed" in caplog.text and staging[0] in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    assert len(list(open_bag(tmp_path / "b").images(IMAGE_TOPIC))) == 1


def test_a_running_writers_staging_is_left_alone(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b") as first:
        first.write_image(IMAGE_TOPIC, T0, scene(0))
        with pytest.raises(FileExistsError, match="being written by another writer"), \
                BagWriter(tmp_path / "b"):
            pass
        assert len(list(tmp_path.glob(".b.*.partial"))) == 1
    assert (tmp_path / "b").is_dir()


def _write_with_rosbags(path: Path, storage: StoragePlugin) -> Path:
    """An input bag as another recorder would write it, with a recorded QoS profile."""
    store = typestore()
    with Writer(path, version=8, storage_plugin=storage) as w:
        conn = w.add_connection(IMAGE_TOPIC, IMAGE_TYPE, typestore=store,
                                offered_qos_profiles=[RECORDED])
        for i in range(3):
            with BagWriter(path.parent / f"tmp{i}") as tmp:
                tmp.write_image(IMAGE_TOPIC, T0 + i * DT, scene(i, h=48, w=64))
            (msg,) = open_bag(path.parent / f"tmp{i}").messages()
            w.write(conn, msg.t_ns, msg.data)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.bundles import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", camera=(64, 48), seed=0)


@pytest.mark.parametrize("source", ["mcap", "sqlite3"])
@pytest.mark.parametrize("target", ["mcap", "sqlite3"])
def test_replay_into_either_storage_keeps_real_qos(tmp_path: Path, bundle: Path, source: str,
                                                   target: str) -> None:
    from uwstego.replay.loop import ReplaySettings, replay
    from uwstego.replay.outputs import NODE_NAMESPACE

    bag = _write_with_rosbags(tmp_path / "in", StoragePlugin[source.upper()])
    out = tmp_path / "out"
    result = replay(bag, bundle, ReplaySettings(backend="onnxruntime", storage=target,
                                                progress=False), out_bag=out)
    assert result.summary.frames.processed == 3
    with AnyReader([out], default_typestore=typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        assert sum(1 for _ in reader.messages()) == sum(counts.values())
    assert counts[IMAGE_TOPIC] == 3 and counts[f"{NODE_NAMESPACE}/labels"] == 3
    assert qos[IMAGE_TOPIC] == [RECORDED]  # copied from the input
    for topic, (profile,) in offered(out).items():
        assert set(profile) == QOS_KEYS
        if topic.startswith(NODE_NAMESPACE):  # what the node publishes: reliable, depth 1
            assert (profile["reliability"], profile["depth"]) == (1, 1), topic


# -- the camera topic --------------------------------------------------------------------------


def test_camera_rule_marked_named_and_label_like_topics(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 6, (64, 80), dtype=np.uint8)
    grey = scene(2)[..., 1].copy()
    with BagWriter(tmp_path / "b", label_topics=("/truth",)) as w:
        w.write_image(IMAGE_TOPIC, T0, scene(0))
        w.write_compressed(IMAGE_TOPIC + "/compressed", T0, scene(0))  # the same camera
        w.write_image("/truth", T0, scene(1))  # marked in the bag
        w.write_image("/front/labels", T0, labels, "mono8")  # named like labels
        w.write_image("/ids", T0, labels, "mono8")  # mono8 with six levels
        w.write_image("/range", T0, np.ones((64, 80), np.uint16), "mono16")  # two levels
        w.write_image("/depth", T0, np.ones((64, 80), np.float32), "32FC1")
        w.write_image("/grey/image", T0, grey, "mono8")  # a grey camera
        w.write_image("/thermal/image", T0, grey.astype(np.uint16) * 200, "mono16")  # decodable
    bag = open_bag(tmp_path / "b")
    assert bag.label_topics == ("/truth",)
    assert set(camera_topics(bag)) == {IMAGE_TOPIC, "/grey/image", "/thermal/image"}
    with pytest.raises(ValueError, match=r"3 camera topics; choose one with --topic: "
                                         r"/camera/image_raw \(Image\), /grey/image \(Image\), "
                                         r"/thermal/image \(Image\)"):
        choose_camera_topic(bag)
    assert choose_camera_topic(bag, "/ids") == "/ids"  # named: the user's choice
    assert choose_camera_topic(bag, exclude=("/grey/image", "/thermal/image")) == IMAGE_TOPIC
    assert why_not_camera(bag, "/depth") == "32FC1 frames (depth, range or label ids, not a " \
                                            "picture)"
    assert why_not_camera(bag, "/range") == "mono16 frames with at most 32 grey levels (label " \
                                            "images)"


def _nv21_camera(path: Path) -> Path:
    """A bag whose camera (/camera/image_raw) records nv21, an encoding the decoder lacks."""
    with BagWriter(path) as bag:
        for i in range(3):
            t = T0 + i * DT
            msg = bag.store.types[IMAGE_TYPE](
                header=bag.header(t, "cam"), height=48, width=64, encoding="nv21",
                is_bigendian=0, step=64, data=np.full(64 * 48 * 3 // 2, 128, np.uint8))
            bag.write_message(IMAGE_TOPIC, t, IMAGE_TYPE, msg)
    return path


def test_a_camera_the_decoder_cannot_read_is_one_line_in_replay_and_training(
        tmp_path: Path, bundle: Path) -> None:
    from tests.support.commands import assert_one_line_error, run_tool
    from uwstego.training.data.sources import ReadReport, RosBag

    bag = _nv21_camera(tmp_path / "bag")
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--out", tmp_path / "out",
                       "--no-progress")
    assert_one_line_error(outcome, f"camera topic {IMAGE_TOPIC} of {bag} holds nv21 frames",
                          "supported: bayer_bggr8", "mono16", "yuyv", "--topic")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=f"camera topic {IMAGE_TOPIC} of .* holds nv21 frames, an "
                                         "encoding the decoder cannot read"):
        next(RosBag(bag).frames(ReadReport()))


def test_the_reports_frames_to_look_at_are_read_past_the_damage_replay_read_past(
        tmp_path: Path, bundle: Path) -> None:
    pytest.importorskip("matplotlib")
    from uwstego.replay.loop import ReplaySettings, replay

    with BagWriter(tmp_path / "dive") as w:
        for i in range(12):
            w.write_image(IMAGE_TOPIC, T0 + i * DT, scene(i, h=48, w=64))
    store = next((tmp_path / "dive").glob("*.mcap"))
    store.write_bytes(store.read_bytes()[:store.stat().st_size * 2 // 3])  # no summary left
    report = tmp_path / "report"
    result = replay(tmp_path / "dive", bundle,
                    ReplaySettings(backend="onnxruntime", progress=False), report_dir=report)
    assert result.summary.frames.damage and 0 < result.summary.frames.processed < 12
    looks = result.summary.outputs.looks
    assert looks, "no frame to look at was drawn"
    for look in looks:
        assert (report / look.image).is_file() and (report / look.thumbnail).is_file()


# -- one writer per output path, and the leftovers of killed ones --------------------------------


def _replay_cli(*args: str | Path) -> subprocess.Popen[str]:
    code = "import sys; from uwstego.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "replay", *map(str, args)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(pattern: str, folder: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.02)


def _paced_dive(path: Path, frames: int = 30, dt: int = DT) -> Path:
    """``frames`` at 1 / ``dt``: ``--realtime`` replays them in ``frames * dt``."""
    with BagWriter(path) as w:
        for i in range(frames):
            w.write_image(IMAGE_TOPIC, T0 + i * dt, scene(i, h=48, w=64))
    return path


def test_two_replays_into_one_output_the_second_is_refused(tmp_path: Path,
                                                           bundle: Path) -> None:
    from tests.support.commands import assert_one_line_error, run_tool

    dive, out = _paced_dive(tmp_path / "dive", 60, 1_000_000_000), tmp_path / "out"
    first = _replay_cli(dive, "--bundle", bundle, "--out", out, "--realtime",
                        "--backend", "onnxruntime", "--no-progress")
    _wait_for(".out.*.partial", tmp_path, first)  # the first is writing its bag, for a minute
    second = run_tool("uwstego", "replay", dive, "--bundle", bundle, "--out", out,
                      "--backend", "onnxruntime", "--no-progress")
    assert_one_line_error(second, f"{out} is being written by another process "
                                  f"(process {first.pid})")
    assert first.poll() is None
    first.send_signal(signal.SIGINT)  # the first ends with the frames it has: a valid bag
    assert first.wait(timeout=120) == 130, first.communicate()
    assert 0 < len(list(open_bag(out).images(IMAGE_TOPIC))) < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dive", "out"]  # nothing hidden


def test_the_next_replay_removes_what_a_killed_replay_left(tmp_path: Path,
                                                           bundle: Path) -> None:
    pytest.importorskip("matplotlib")
    from uwstego.replay.loop import ReplaySettings, replay

    dive, out, report = _paced_dive(tmp_path / "dive"), tmp_path / "out", tmp_path / "report"
    killed = _replay_cli(dive, "--bundle", bundle, "--out", out, "--report", report,
                         "--realtime", "--backend", "onnxruntime", "--no-progress")
    _wait_for(".out.*.partial", tmp_path, killed)  # the report is staged before the bag opens
    killed.kill()
    killed.wait(timeout=30)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert any(n.startswith(".report.") and n.endswith(".staging") for n in left), left
    replay(dive, bundle, ReplaySettings(backend="onnxruntime", progress=False), out_bag=out,
           report_dir=report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dive", "out", "report"]


@pytest.fixture(scope="module")
def synth_dive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("uwstego.training.synth.sequence")
    from uwstego.training.synth.settings import DiveSettings
    from uwstego.training.synth.writer import write_dive

    out = tmp_path_factory.mktemp("synth") / "dive"
    write_dive(DiveSettings(frames=6, width=96, height=64, seed=1), out, folders=False, bag=True)
    return out


def test_synth_dive_folder_is_a_bag_whose_labels_are_not_the_camera(synth_dive: Path) -> None:
    bag = open_bag(synth_dive)  # the folder: dive.json and bag/
    assert bag.path == synth_dive / "bag" and bag.label_topics == (LABELS_GT_TOPIC,)
    assert set(bag.image_topics) == {IMAGE_TOPIC, LABELS_GT_TOPIC}
    assert list(camera_topics(bag)) == [IMAGE_TOPIC]  # what play --wait-for-subscribers awaits


def test_label_mark_survives_a_lost_metadata_yaml(synth_dive: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(synth_dive / "bag", tmp_path / "bag")
    (tmp_path / "bag" / "metadata.yaml").unlink()
    bag = open_bag(tmp_path / "bag")  # the MCAP file's own copy of the metadata
    assert bag.label_topics == (LABELS_GT_TOPIC,) and bag.counts[LABELS_GT_TOPIC] == 6
    assert list(camera_topics(bag)) == [IMAGE_TOPIC]


def test_not_a_bag_says_what_is_there(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        (photos / name).write_bytes(b"x")
    (photos / "sub").mkdir()
    with pytest.raises(ValueError, match=r"is not a bag: .* holds 2 \.png files, folders sub"):
        open_bag(photos)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="neither a rosbag1 file nor MCAP/sqlite3"):
        open_bag(tmp_path / "notes.txt")
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "dive.json").write_text("{}")
    with pytest.raises(ValueError, match="without a bag"):
        open_bag(tmp_path / "synth")


def test_replay_and_play_take_a_synth_dive_folder(synth_dive: Path, bundle: Path,
                                                  tmp_path: Path) -> None:
    from uwstego.replay.loop import ReplaySettings, replay
    from uwstego.replay.source import FrameSource, choose_topic

    result = replay(synth_dive, bundle, ReplaySettings(backend="onnxruntime", progress=False))
    assert result.summary.topic == IMAGE_TOPIC and result.summary.frames.processed == 6
    source = FrameSource(synth_dive)
    assert choose_topic(source.topics, None, source.bag) == IMAGE_TOPIC


def test_train_on_a_synth_bag_takes_the_camera_frames_only(synth_dive: Path,
                                                           tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from uwstego.training.backbones import save_random_checkpoint
    from uwstego.training.features import FeatureCache
    from uwstego.training.pipeline import run_training
    from uwstego.training.settings import PipelineSettings, TrainSettings

    weights = save_random_checkpoint("tiny_vit8", tmp_path / "w.pth", seed=0)
    pipeline = PipelineSettings(backbone="tiny_vit8", weights=weights, resolution=32,
                                crop_type="full", knn_k=2, feature_batch_size=6)
    settings = TrainSettings(steps=2, batch_size=2, clusters=2, code_dim=8, feature_samples=2,
                             num_neighbors=1, log_every=1, checkpoint_every=2,
                             kmeans_samples=200)
    started = time.perf_counter()
    result = run_training([synth_dive / "bag"], tmp_path / "run", pipeline, settings,
                          progress=False)
    cache = FeatureCache.open(result.model.provenance["feature_cache"])
    report = cache.meta["report"]
    topics = {f["ref"]["topic"] for shard in cache._frames for f in shard}
    print(f"TRAIN synth bag: {report['kept']} frames kept of {report['seen']} seen, topics "
          f"{sorted(topics)}, {time.perf_counter() - started:.1f} s")
    assert report["kept"] == 6 and report["seen"] == 6 and topics == {IMAGE_TOPIC}
