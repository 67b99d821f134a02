"""Offline replay on real bags (rosbags MCAP and sqlite3) with a real exported tiny bundle."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from tests.support.bundles import make_tiny_bundle
from tests.support.media import scene
from uwstego.bags import BagWriter, iter_bag_images, typestore
from uwstego.bundle import load_bundle
from uwstego.enhance import EnhanceSettings
from uwstego.replay.cli import register
from uwstego.replay.loop import SUMMARY_FILE, ReplaySettings, replay
from uwstego.replay.outputs import NODE_NAMESPACE
from uwstego.replay.summary import read_summary
from uwstego.replay.video import VIDEO_FILES, find_video
from uwstego.scoring import unsupervised_scores
from uwstego.segmenter import Segmenter

CAMERA = (64, 48)
RAW, JPEG, GT = "/camera/image_raw", "/camera/image_raw/compressed", "/camera/labels_gt"
INFO = "/camera/camera_info"
T0, DT = 1_700_000_000_000_000_000, 100_000_000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", camera=CAMERA, seed=0)


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("b2") / "bundle", camera=CAMERA, seed=1,
                            k=4, enhancement=EnhanceSettings.raw())


def frames(n: int, size: tuple[int, int] = CAMERA) -> list[np.ndarray]:
    return [scene(i, h=size[1], w=size[0]) for i in range(n)]


def write_bag(path: Path, images: list[np.ndarray], storage: str = "mcap",
              compressed: bool = False, truth: list[np.ndarray | None] | None = None,
              camera_info: bool = False) -> Path:
    with BagWriter(path, storage=storage) as bag:
        for i, rgb in enumerate(images):
            t = T0 + i * DT
            if camera_info:  # just before each frame and once after the last
                h, w = rgb.shape[:2]
                for t_info in (t - 3, *((t + DT // 2,) if i == len(images) - 1 else ())):
                    bag.write_camera_info(INFO, t_info, w, h, [[40, 0, w / 2], [0, 40, h / 2],
                                                               [0, 0, 1]], frame_id="cam")
            if compressed:
                bag.write_compressed(JPEG, t, rgb, stamp_ns=t - 7, frame_id="cam")
            else:
                bag.write_image(RAW, t, rgb, "rgb8", stamp_ns=t - 7, frame_id="cam")
            if truth is not None and truth[i] is not None:
                bag.write_image(GT, t, truth[i], "mono8", stamp_ns=t - 7, frame_id="cam")
    return path


def direct_labels(bundle: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """What the Segmenter alone makes of the frames, in order (one stream)."""
    seg = Segmenter(bundle, backend="onnxruntime")
    return [seg.segment(rgb).labels for rgb in images]


def read_topic(bag: Path, topic: str) -> list:
    with AnyReader([bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(conns)]


def topic_counts(bag: Path) -> dict[str, int]:
    """Messages per topic of a bag, read with rosbags (which also checks that it is valid)."""
    with AnyReader([bag], default_typestore=typestore()) as reader:
        return {c.topic: sum(1 for _ in reader.messages([c])) for c in reader.connections}


def settings(**kw) -> ReplaySettings:
    return ReplaySettings(backend="onnxruntime", progress=False, **kw)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_output_bag_holds_the_frames_and_the_nodes_topics(tmp_path, bundle, storage):
    images = frames(5)
    bag = write_bag(tmp_path / "dive", images, storage=storage)
    out = tmp_path / "out"
    result = replay(bag, bundle, settings(), out_bag=out)

    assert result.summary.stopped == "completed"
    assert result.summary.frames.processed == 5
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    expected = direct_labels(bundle, images)
    labels = read_topic(out, f"{NODE_NAMESPACE}/labels")
    assert [t for t, _ in labels] == [T0 + i * DT for i in range(5)]
    for (_, msg), ref in zip(labels, expected, strict=True):
        assert msg.encoding == "mono8"
        assert (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec) % DT == DT - 7
        assert msg.header.frame_id == "cam"
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), ref)
    names = [c.name for c in load_bundle(bundle).meta.classes]
    for _, msg in read_topic(out, f"{NODE_NAMESPACE}/coverage"):
        assert msg.layout.dim[0].label == ",".join(names)
        assert msg.data.sum() == pytest.approx(1.0, abs=1e-5)
    # By default the confidence is mono16 (similarity x 65535, the factor back on a companion
    # topic) and the overlay a JPEG CompressedImage, to keep the bag small.
    conf = read_topic(out, f"{NODE_NAMESPACE}/confidence")
    assert conf[0][1].encoding == "mono16" and len(conf) == 5
    scale = read_topic(out, f"{NODE_NAMESPACE}/confidence/scale")
    assert [t for t, _ in scale] == [t for t, _ in conf]
    assert scale[0][1].data == pytest.approx(1 / 65535)
    direct = Segmenter(bundle, backend="onnxruntime").segment(images[0]).confidence
    stored = conf[0][1].data.view("<u2").reshape(conf[0][1].height, conf[0][1].width)
    np.testing.assert_allclose(stored * scale[0][1].data, np.clip(direct, 0, 1), atol=1e-4)
    copied = read_topic(out, RAW)
    np.testing.assert_array_equal(copied[2][1].data.reshape(CAMERA[1], CAMERA[0], 3), images[2])
    overlays = read_topic(out, f"{NODE_NAMESPACE}/overlay/compressed")
    assert [m.format for _, m in overlays] == ["jpeg"] * 5


def test_compressed_input_and_report(tmp_path, bundle):
    images = frames(6)
    bag = write_bag(tmp_path / "dive", images, compressed=True)
    decoded = [f.rgb for f in iter_bag_images(bag, JPEG)]
    out, report = tmp_path / "out", tmp_path / "report"
    result = replay(bag, bundle, settings(), out_bag=out, report_dir=report)

    assert result.summary.topic == JPEG
    got = [m for _, m in read_topic(out, f"{NODE_NAMESPACE}/labels")]
    for msg, ref in zip(got, direct_labels(bundle, decoded), strict=True):
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), ref)
    assert [m.format for _, m in read_topic(out, JPEG)] == ["jpeg"] * 6

    files = {p.name for p in report.iterdir()}
    video_file = find_video(report)
    assert video_file in VIDEO_FILES  # H.264 or VP8: a codec browsers play
    assert {"index.html", SUMMARY_FILE, video_file, "latency.png", "coverage.png",
            "flicker.png", "confidence.png"} <= files
    summary = read_summary(report / SUMMARY_FILE)
    assert summary == result.summary  # summary.json reads back into the same document
    assert summary.frames.processed == 6
    lat = summary.primary.figures.latency_ms
    assert 0 < lat.p50 <= lat.p95 <= lat.p99 <= lat.max
    assert len(summary.primary.series.latency_ms) == 6
    flicker = summary.primary.series.flicker
    ref = direct_labels(bundle, decoded)
    assert flicker[0] is None
    assert flicker[3] == pytest.approx(float(np.mean(ref[3] != ref[2])))
    video = cv2.VideoCapture(str(report / video_file))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()
    assert summary.outputs.video == video_file
    page = (report / "index.html").read_text()
    assert "latency.png" in page and video_file in page and str(bag) in page


def stored(bag: Path, topic: str) -> list[tuple[str, int, bytes]]:
    """(type, log time, bytes) of every message on ``topic``, read with rosbags alone."""
    with AnyReader([bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages(conns)]


@pytest.mark.parametrize("compressed", [False, True])
def test_output_bag_copies_the_input_and_camera_info_unchanged(tmp_path, bundle, compressed):
    bag = write_bag(tmp_path / "dive", frames(4), compressed=compressed, camera_info=True)
    out = tmp_path / "out"
    result = replay(bag, bundle, settings(), out_bag=out)
    assert result.summary.outputs.camera_info_copied == INFO
    store = typestore()
    for topic, n in ((JPEG if compressed else RAW, 4), (INFO, 5)):
        original, copied = stored(bag, topic), stored(out, topic)
        assert len(copied) == n
        assert copied == original  # type, log time and the bytes themselves
        for (msgtype, _, a), (_, _, b) in zip(original, copied, strict=True):
            decoded, expected = store.deserialize_cdr(b, msgtype), store.deserialize_cdr(a, msgtype)
            assert decoded.header == expected.header
            for name in ("data", "format", "encoding", "step", "k", "d"):
                if hasattr(expected, name):
                    np.testing.assert_array_equal(getattr(decoded, name), getattr(expected, name))


def test_bag_with_damaged_metadata_is_replayed_record_by_record(tmp_path, bundle):
    images = frames(3)
    bag = write_bag(tmp_path / "dive", images)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n  broken")
    result = replay(bag, bundle, settings(), out_bag=tmp_path / "out")
    assert result.summary.frames.processed == 3
    assert any("metadata.yaml cannot be read" in d for d in result.summary.frames.damage)
    labels = [m for _, m in read_topic(tmp_path / "out", f"{NODE_NAMESPACE}/labels")]
    for msg, ref in zip(labels, direct_labels(bundle, images), strict=True):
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), ref)
    assert [m.data.tobytes() for _, m in read_topic(tmp_path / "out", RAW)] == [
        im.tobytes() for im in images]


def test_ground_truth_scores_on_a_synthetic_dive(tmp_path, bundle):
    synth = pytest.importorskip("uwstego.training.synth.sequence")
    from uwstego.training.synth.classes import CLASS_NAMES
    from uwstego.training.synth.settings import DiveSettings

    dive = list(synth.generate_dive(DiveSettings(frames=5, width=96, height=64, seed=3)))
    truth: list[np.ndarray | None] = [f.labels for f in dive]
    truth[2] = None  # one frame without ground truth
    bag = write_bag(tmp_path / "dive", [f.rgb for f in dive], truth=truth)
    n = len(CLASS_NAMES)
    result = replay(bag, bundle, settings(gt_topic=GT, gt_names=CLASS_NAMES))
    gt = result.summary.primary.ground_truth
    scores = gt.scores
    assert list(scores.per_class_iou) == list(CLASS_NAMES)

    preds = direct_labels(bundle, [f.rgb for f in dive])
    scored = [i for i in range(5) if truth[i] is not None]
    k = len(load_bundle(bundle).meta.classes)
    expected = unsupervised_scores([preds[i] for i in scored], [truth[i] for i in scored], n,
                                   extra_clusters=max(0, k - n))
    assert gt.frames_scored == 4 and gt.frames_without_truth == 1
    assert scores.mIoU == pytest.approx(expected.miou)
    assert scores.accuracy == pytest.approx(expected.accuracy)
    assert scores.assignment == tuple(expected.assignment)
    over_time = scores.over_time["accuracy"]
    assert over_time[2] is None and all(over_time[i] is not None for i in scored)


def test_ground_truth_that_is_a_relabelling_scores_100(tmp_path, bundle):
    images = frames(4)
    preds = direct_labels(bundle, images)
    k = len(load_bundle(bundle).meta.classes)
    relabel = np.roll(np.arange(k, dtype=np.uint8), 2)
    truth = [relabel[p] for p in preds]
    truth[1][:8] = 255  # ignored rows
    bag = write_bag(tmp_path / "dive", images)
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for i, t in enumerate(truth):  # by frame index on the topic
        cv2.imwrite(str(gt_dir / f"{i:06d}.png"), t)
    result = replay(bag, bundle, settings(gt_dir=gt_dir, gt_classes=k))
    gt = result.summary.primary.ground_truth.scores
    assert gt.mIoU == pytest.approx(100.0) and gt.accuracy == pytest.approx(100.0)
    assert gt.pixels == sum(t.size for t in truth) - 8 * CAMERA[0]
    assert [relabel[c] for c in gt.assignment] == list(range(k))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_replayed_up_to_the_damage(tmp_path, bundle, storage):
    images = frames(30, size=(128, 96))  # 30 x 37 kB: beyond one 1 MiB MCAP chunk
    bag = write_bag(tmp_path / "dive", images, storage=storage)
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    store = next(p for p in cut.iterdir() if p.suffix in (".mcap", ".db3"))
    store.write_bytes(store.read_bytes()[:int(store.stat().st_size * 0.6)])

    result = replay(cut, bundle, settings(), out_bag=tmp_path / "out")
    frames_doc = result.summary.frames
    processed = frames_doc.processed
    assert 0 < processed < 30
    assert frames_doc.damage and any(store.name in d for d in frames_doc.damage)
    labels = [m for _, m in read_topic(tmp_path / "out", f"{NODE_NAMESPACE}/labels")]
    assert len(labels) == processed
    for msg, ref in zip(labels, direct_labels(bundle, images[:processed]), strict=True):
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), ref)


def test_corrupt_record_costs_only_its_frame(tmp_path, bundle):
    images = frames(12)
    bag = write_bag(tmp_path / "dive", images)
    store = next(bag.glob("*.mcap"))
    data = bytearray(store.read_bytes())
    # A message record: opcode, u64 length, channel u16, sequence u32, log and publish time.
    t = struct.pack("<Q", T0 + 7 * DT)
    record = data.find(t + t) - 15
    assert data[record] == 0x05
    struct.pack_into("<Q", data, record + 1, 1 << 40)  # a length no file can satisfy
    store.write_bytes(bytes(data))

    result = replay(bag, bundle, settings(), out_bag=tmp_path / "out")
    doc = result.summary.frames
    # The reader steps over the broken record to the next valid one: only frame 7 is lost,
    # and the loss is reported against the index's count.
    kept = [i for i in range(12) if i != 7]
    assert result.summary.frames_t_ns == tuple(T0 + i * DT for i in kept)
    assert any("reading on after them" in d for d in doc.damage)
    assert any(f"{RAW}: the index lists 12 messages, 11 were read" in d for d in doc.damage)
    labels = [m for _, m in read_topic(tmp_path / "out", f"{NODE_NAMESPACE}/labels")]
    for msg, ref in zip(labels, direct_labels(bundle, [images[i] for i in kept]), strict=True):
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), ref)


def test_frames_in_unknown_encodings_are_counted(tmp_path, bundle):
    images = frames(4)
    bag = tmp_path / "dive"
    with BagWriter(bag) as w:
        for i, rgb in enumerate(images):
            w.write_image(RAW, T0 + i * DT, rgb, "rgb8", stamp_ns=T0 + i * DT)
        types = w.store.types
        odd = types["sensor_msgs/msg/Image"](
            header=types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam"),
            height=2, width=2, encoding="32FC3", is_bigendian=0, step=24,
            data=np.zeros(48, np.uint8))
        w.write_message(RAW, T0 + 10 * DT, "sensor_msgs/msg/Image", odd)
    result = replay(bag, bundle, settings(), report_dir=tmp_path / "report")
    doc = result.summary.frames
    assert doc.processed == 4 and doc.skipped == 1
    assert any("32FC3" in reason for reason in doc.skip_reasons)
    assert "32FC3" in (tmp_path / "report" / "index.html").read_text()


def test_wrong_or_missing_topic_lists_the_image_topics(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(2), compressed=True, truth=[
        np.zeros(CAMERA[::-1], np.uint8)] * 2)
    with pytest.raises(ValueError, match=r"/camera/image_raw/compressed \(CompressedImage\)"):
        replay(bag, bundle, settings(topic="/camera/front"))
    with BagWriter(tmp_path / "two") as w:  # no preferred name, two candidates
        for topic in ("/left/image", "/right/image"):
            w.write_image(topic, T0, frames(1)[0], "rgb8")
    with pytest.raises(ValueError, match=r"2 camera topics; choose one with --topic: "
                                         r"/left/image \(Image\), /right/image \(Image\)"):
        replay(tmp_path / "two", bundle, settings())
    with pytest.raises(FileNotFoundError, match="bag not found"):
        replay(tmp_path / "nope", bundle, settings())


def test_every_and_realtime(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(5))
    result = replay(bag, bundle, settings(every=2, realtime=True))
    assert result.summary.frames_index == (0, 2, 4)
    # Paced by bag time: the last used frame is due 0.4 s after the first.
    assert result.summary.wall_s >= 0.4


def test_compare_two_bundles(tmp_path, bundle, other_bundle):
    images = frames(4)
    bag = write_bag(tmp_path / "dive", images)
    same = replay(bag, bundle, settings(), compare=bundle)
    assert same.summary.compared[0].agreement.accuracy == pytest.approx(100.0)

    out, report = tmp_path / "out", tmp_path / "report"
    diff = replay(bag, bundle, settings(), compare=other_bundle, out_bag=out, report_dir=report)
    a, b = direct_labels(bundle, images), direct_labels(other_bundle, images)
    k_a, k_b = (len(load_bundle(x).meta.classes) for x in (bundle, other_bundle))
    expected = unsupervised_scores(b, a, n_classes=k_a, extra_clusters=max(0, k_b - k_a))
    agreement = diff.summary.compared[0].agreement
    assert agreement.accuracy == pytest.approx(expected.accuracy)
    assert agreement.accuracy < 100.0
    compare_labels = [m for _, m in read_topic(out, f"{NODE_NAMESPACE}/compare/labels")]
    for msg, ref in zip(compare_labels, b, strict=True):
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), ref)
    assert (report / "agreement.png").is_file()
    assert diff.summary.compared[0].figures.latency_ms.p50 > 0


def test_several_compared_bundles_each_get_topics_and_agreement(tmp_path, bundle,
                                                                 other_bundle):
    images = frames(3)
    bag = write_bag(tmp_path / "dive", images)
    out, report = tmp_path / "out", tmp_path / "report"
    assert _cli(["replay", str(bag), "--bundle", str(bundle), "--compare", str(other_bundle),
                 "--compare", str(bundle), "--out", str(out), "--report", str(report),
                 "--backend", "onnxruntime", "--no-progress"]) == 0
    summary = read_summary(report / SUMMARY_FILE)
    assert [m.role for m in summary.models] == ["model", "compare", "compare2"]
    assert [m.bundle.path for m in summary.models] == [str(bundle), str(other_bundle),
                                                       str(bundle)]
    assert summary.primary.agreement is None
    assert summary.compared[0].agreement.accuracy < 100.0
    assert summary.compared[1].agreement.accuracy == pytest.approx(100.0)  # itself
    for sub, ref in (("compare", direct_labels(other_bundle, images)),
                     ("compare2", direct_labels(bundle, images))):
        got = [m for _, m in read_topic(out, f"{NODE_NAMESPACE}/{sub}/labels")]
        for msg, expected in zip(got, ref, strict=True):
            np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width), expected)
    overlays = {t for t in topic_counts(out) if "/overlay" in t}
    assert overlays == {f"{NODE_NAMESPACE}/overlay/compressed"}  # the first model's only
    page = (report / "index.html").read_text()
    assert "compare2" in page and "agreement.png" in page

    doc = json.loads((report / SUMMARY_FILE).read_text())
    doc["models"][1]["agreement"]["acuracy"] = 1.0  # a typo is refused, not dropped
    (tmp_path / "typo.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"typo.json: summary.models\[1\].agreement: unknown "
                                         r"fields \['acuracy'\]"):
        read_summary(tmp_path / "typo.json")
    (tmp_path / "cut.json").write_text((report / SUMMARY_FILE).read_text()[:100])
    with pytest.raises(ValueError, match=r"cut\.json: not a replay summary"):
        read_summary(tmp_path / "cut.json")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="uwstego")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_runs_and_reports(tmp_path, bundle, capsys):
    bag = write_bag(tmp_path / "dive", frames(3))
    assert _cli(["replay", str(bag), "--bundle", str(bundle), "--backend", "onnxruntime",
                 "--no-progress", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["frames"]["processed"] == 3 and "per_frame" not in printed


def test_interrupt_leaves_a_valid_bag_and_a_report(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(40))  # 4 s of bag time, replayed in real time
    out, report = tmp_path / "out", tmp_path / "report"
    argv = ["replay", str(bag), "--bundle", str(bundle), "--out", str(out), "--report",
            str(report), "--realtime", "--backend", "onnxruntime", "--no-progress"]
    # As `uwstego replay` runs it: uwstego.cli.main turns KeyboardInterrupt into exit code 130.
    script = textwrap.dedent(f"""
        import argparse, sys
        from uwstego.replay.cli import register
        parser = argparse.ArgumentParser(prog="uwstego")
        register(parser.add_subparsers())
        args = parser.parse_args({argv!r})
        try:
            sys.exit(args.func(args))
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # The output bag is staged next to its final path once frames start flowing.
    while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "replay never started"
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130, proc.stderr.read().decode()

    summary = read_summary(report / SUMMARY_FILE)
    assert summary.stopped == "interrupted"
    processed = summary.frames.processed
    assert 1 <= processed < 40
    labels = read_topic(out, f"{NODE_NAMESPACE}/labels")  # a complete, readable bag
    assert len(labels) == processed
    assert len(read_topic(out, RAW)) == processed
    assert (report / "index.html").is_file()


def test_replay_needs_no_matplotlib_without_a_report(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(2))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["matplotlib"] = None  # as on a vehicle without it
        from uwstego.replay.loop import ReplaySettings, replay
        from uwstego.replay.plots import ReportUnavailable
        s = ReplaySettings(backend="onnxruntime", progress=False)
        r = replay({str(bag)!r}, {str(bundle)!r}, s, out_bag={str(tmp_path / "out")!r})
        assert r.summary.frames.processed == 2
        try:
            replay({str(bag)!r}, {str(bundle)!r}, s, report_dir={str(tmp_path / "rep")!r})
        except ReportUnavailable as exc:
            print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: the replay report needs matplotlib" in done.stdout
    assert not (tmp_path / "rep").exists()


def test_play_restamps_the_stored_bytes_and_reads_damaged_bags(tmp_path):
    from uwstego.bags import open_bag
    from uwstego.replay.play import parse_remap, restamped

    bag = write_bag(tmp_path / "dive", frames(3))
    opened = open_bag(bag)
    msgs = list(opened.messages({RAW}, T0 + DT, None))
    assert [m.t_ns for m in msgs] == [T0 + DT, T0 + 2 * DT] and not opened.damage
    store = typestore()
    shifted = store.deserialize_cdr(restamped(msgs[0].data, lambda ns: ns + 1_500_000_000),
                                    msgs[0].msgtype)
    original = store.deserialize_cdr(msgs[0].data, msgs[0].msgtype)
    assert (shifted.header.stamp.sec * 10**9 + shifted.header.stamp.nanosec
            == original.header.stamp.sec * 10**9 + original.header.stamp.nanosec + 1_500_000_000)
    np.testing.assert_array_equal(shifted.data, original.data)
    assert shifted.header.frame_id == original.header.frame_id

    storage = next(bag.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[:-100])  # footer and index gone
    opened = open_bag(bag)
    assert len(list(opened.messages({RAW}, T0 + DT, None))) == 2
    assert any("no MCAP footer" in d for d in opened.damage)
    assert parse_remap(["/a:=/b"]) == {"/a": "/b"}
    with pytest.raises(ValueError, match="FROM:=TO"):
        parse_remap(["/a=/b"])


def test_existing_outputs_are_refused(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(1))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists already"):
        replay(bag, bundle, settings(), out_bag=bag)
    with pytest.raises(ValueError, match="holds no earlier replay report"):
        replay(bag, bundle, settings(), report_dir=tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def _uwstego(argv: list[str], prelude: str = "", timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    """``uwstego ARGV`` as the installed command runs it (uwstego.cli.main), after ``prelude``."""
    script = prelude + textwrap.dedent(f"""
        import sys
        from uwstego.cli import main
        sys.exit(main({argv!r}))
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _problem_lines(stderr: str) -> list[str]:
    """The log's warnings and errors (one per problem), and any traceback."""
    return [line for line in stderr.splitlines()
            if "WARNING" in line or "ERROR" in line or "Traceback" in line]


def _unusable_bag(path: Path, n: int) -> Path:
    """A bag whose camera frames are all cut short (an encoding the decoder lacks is refused
    before any frame: tests/test_bag_writer.py)."""
    with BagWriter(path) as w:
        types = w.store.types
        for i in range(n):
            odd = types["sensor_msgs/msg/Image"](
                header=w.header(T0 + i * DT, "cam"), height=2, width=2, encoding="rgb8",
                is_bigendian=0, step=6, data=np.zeros(5, np.uint8))
            w.write_message(RAW, T0 + i * DT, "sensor_msgs/msg/Image", odd)
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_no_usable_frame_gives_an_empty_bag_a_report_and_one_line(tmp_path, bundle, storage):
    bag = _unusable_bag(tmp_path / "dive", 3)
    out, report = tmp_path / "out", tmp_path / "report"
    done = _uwstego(["replay", str(bag), "--bundle", str(bundle), "--out", str(out),
                     "--report", str(report), "--backend", "onnxruntime", "--no-progress",
                     "--storage", storage])
    assert done.returncode == 1, done.stderr
    problems = _problem_lines(done.stderr)
    assert not any("Traceback" in line for line in problems), done.stderr
    errors = [line for line in problems if "ERROR" in line]
    assert len(errors) == 1 and f"no frame of {RAW} was usable" in errors[0]
    assert "3 frames read, 3 skipped" in errors[0] and "truncated rgb8 image" in errors[0]
    assert topic_counts(out) == {}  # a valid, empty bag
    summary = read_summary(report / SUMMARY_FILE)
    assert (summary.stopped, summary.frames.processed, summary.frames.skipped) == (
        "completed", 0, 3)
    assert summary.outputs.plots == () and summary.primary.series.latency_ms == ()
    page = (report / "index.html").read_text()
    assert "No frame was processed" in page and "truncated rgb8 image" in page


@pytest.mark.parametrize("call", [1, 2], ids=["during-warm-up", "during-first-frame"])
def test_ctrl_c_before_any_frame_leaves_a_valid_bag_and_a_report(tmp_path, bundle, call):
    bag = write_bag(tmp_path / "dive", frames(5))
    out, report = tmp_path / "out", tmp_path / "report"
    # Ctrl-C arrives while the Segmenter runs its first call (the warm-up) or its second (the
    # first frame of the bag), as a user's would during a slow first inference.
    prelude = textwrap.dedent(f"""
        import os, signal
        from uwstego.segmenter import Segmenter
        real, calls = Segmenter.segment, []
        def segment(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == {call}:
                os.kill(os.getpid(), signal.SIGINT)
            return real(self, *args, **kwargs)
        Segmenter.segment = segment
    """)
    done = _uwstego(["replay", str(bag), "--bundle", str(bundle), "--out", str(out),
                     "--report", str(report), "--backend", "onnxruntime", "--no-progress"],
                    prelude)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert [line for line in _problem_lines(done.stderr) if "ERROR" in line] == []
    assert topic_counts(out) == {}
    summary = read_summary(report / SUMMARY_FILE)
    assert summary.stopped == "interrupted" and summary.frames.processed == 0
    assert "No frame was processed" in (report / "index.html").read_text()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_an_output_bag_that_cannot_be_opened_stops_with_its_own_error_and_a_report(
        tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(3))
    (tmp_path / "file").write_text("not a folder")
    report = tmp_path / "report"
    with pytest.raises(OSError) as raised:  # raised as itself, after the report is written
        replay(bag, bundle, settings(), out_bag=tmp_path / "file" / "out", report_dir=report)
    summary = read_summary(report / SUMMARY_FILE)
    assert summary.stopped.startswith(f"error: writing: {type(raised.value).__name__}")
    assert summary.frames.processed == 0 and summary.frames.errors


def test_ctrl_c_while_the_models_load_leaves_an_empty_bag_and_a_report(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(3))
    out, report = tmp_path / "out", tmp_path / "report"
    prelude = textwrap.dedent("""
        import os, signal
        from uwstego.segmenter import Segmenter
        real = Segmenter.__init__
        def init(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)  # while the backend is being created
            real(self, *args, **kwargs)
        Segmenter.__init__ = init
    """)
    done = _uwstego(["replay", str(bag), "--bundle", str(bundle), "--out", str(out),
                     "--report", str(report), "--backend", "onnxruntime", "--no-progress",
                     "--storage", "sqlite3"], prelude)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert topic_counts(out) == {}
    summary = read_summary(report / SUMMARY_FILE)
    assert summary.stopped == "interrupted while loading the models" and summary.models == ()
    page = (report / "index.html").read_text()
    assert "No frame was processed" in page and "interrupted while loading" in page


def test_a_kill_during_the_report_keeps_every_frame_and_the_earlier_report(tmp_path, bundle):
    bag = write_bag(tmp_path / "dive", frames(6))
    report = tmp_path / "report"
    replay(bag, bundle, settings(), report_dir=report)
    earlier = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    prelude = textwrap.dedent("""
        import os, signal
        import uwstego.replay.report
        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        uwstego.replay.report.write_report = killed
    """)
    done = _uwstego(["replay", str(bag), "--bundle", str(bundle), "--out", str(out),
                     "--report", str(report), "--backend", "onnxruntime", "--no-progress"],
                    prelude)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert len(read_topic(out, f"{NODE_NAMESPACE}/labels")) == 6  # closed before the report
    assert len(read_topic(out, RAW)) == 6
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())
    assert {p.relative_to(report): p.read_bytes() for p in report.rglob("*")
            if p.is_file()} == earlier


def test_restamping_maps_bag_time_onto_the_playback_clock():
    from uwstego.replay.play import PlaybackClock

    wall = 1_800_000_000_000_000_000
    for rate in (0.5, 1.0, 2.0):
        clock = PlaybackClock(start_ns=T0, wall_ns=wall, rate=rate)
        # A frame 1 s into the bag is played (and stamped) 1 / rate seconds after the start.
        assert clock.wall(T0) == wall
        assert clock.wall(T0 + 10 * DT) == wall + round(10 * DT / rate)


def test_a_video_replays_through_the_same_pipeline_with_its_own_frame_times(tmp_path, bundle):
    from tests.support.commands import run_tool
    from tests.support.media import write_video

    video = write_video(tmp_path / "dive.avi", frames(6), fps=5.0)  # OpenCV wrote it: MJPG
    outcome = run_tool("uwstego", "replay", video, "--bundle", bundle, "--backend",
                       "onnxruntime", "--out", tmp_path / "out", "--report", tmp_path / "rep",
                       "--no-progress")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    summary = read_summary(tmp_path / "rep" / SUMMARY_FILE)
    assert summary.frames.processed == 6 and summary.bag == str(video)
    assert np.diff(summary.frames_t_ns).tolist() == [200_000_000] * 5  # the video's 5 frames/s
    copied = list(iter_bag_images(tmp_path / "out", RAW))  # the input frames, as rgb8
    assert len(copied) == 6 and copied[0].rgb.shape == (48, 64, 3)
    labels = list(iter_bag_images(tmp_path / "out", f"{NODE_NAMESPACE}/labels"))
    assert [f.stamp_ns for f in labels] == [f.stamp_ns for f in copied]
    assert (tmp_path / "rep" / "index.html").is_file() and summary.outputs.looks


def test_an_image_folder_replays_at_the_given_rate_with_ground_truth_by_index(tmp_path, bundle):
    from tests.support.media import write_image

    images = frames(4)
    halves = (np.arange(64)[None, :] // 32).repeat(48, 0).astype(np.uint8)
    (tmp_path / "truth").mkdir()
    for i, rgb in enumerate(images):
        write_image(tmp_path / "photos" / f"img_{i:03d}.png", rgb)
        cv2.imwrite(str(tmp_path / "truth" / f"{i:06d}.png"), halves)  # by position: 000002.png
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    (tmp_path / "photos" / "img_999.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    s = ReplaySettings(backend="onnxruntime", progress=False, fps=2.0, gt_dir=tmp_path / "truth")
    summary = replay(tmp_path / "photos", bundle, s, out_bag=tmp_path / "out").summary
    assert summary.frames.processed == 4 and summary.frames.skipped == 1  # img_999 counted
    assert np.diff(summary.frames_t_ns).tolist() == [500_000_000] * 3  # --fps 2
    truth = summary.primary.ground_truth
    assert truth.frames_scored == 4 and truth.scores.mIoU is not None
    # The node's labels of each image, as the Segmenter makes them of the files themselves.
    written = [f.rgb[..., 0] for f in iter_bag_images(tmp_path / "out",
                                                        f"{NODE_NAMESPACE}/labels")]
    for mine, direct in zip(written, direct_labels(bundle, images), strict=True):
        np.testing.assert_array_equal(mine, direct)


def test_a_synthetic_bag_s_declared_labels_are_the_ground_truth_by_default(tmp_path, bundle):
    truth = [(np.arange(64)[None, :] // 32).repeat(48, 0).astype(np.uint8)] * 3
    with BagWriter(tmp_path / "dive", label_topics=(GT,)) as bag:
        for i, (rgb, labels) in enumerate(zip(frames(3), truth, strict=True)):
            bag.write_image(RAW, T0 + i * DT, rgb, "rgb8", stamp_ns=T0 + i * DT)
            bag.write_image(GT, T0 + i * DT, labels, "mono8", stamp_ns=T0 + i * DT)
    summary = replay(tmp_path / "dive", bundle,
                     ReplaySettings(backend="onnxruntime", progress=False)).summary
    assert summary.topic == RAW
    assert summary.primary.ground_truth.source == GT
    assert summary.primary.ground_truth.frames_scored == 3
