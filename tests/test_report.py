"""The replay report as a person uses it: names, tables, frames to look at, a small output bag,
and a real headless Chromium that plays the video and loads every image."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from tests.support.browser import chromium, serve, why_no_browser
from tests.support.bundles import make_tiny_bundle
from tests.support.commands import run_tool
from tests.support.media import scene
from tests.support.media import write_bag as media_bag
from uwstego.bags import BagWriter, typestore
from uwstego.bags.layout import CLASS_NAMES_KEY
from uwstego.bundle import load_bundle
from uwstego.enhance import EnhanceSettings
from uwstego.replay.class_names import bag_class_names
from uwstego.replay.loop import ReplaySettings, replay
from uwstego.replay.outputs import NODE_NAMESPACE
from uwstego.replay.summary import SUMMARY_FILE, read_summary
from uwstego.replay.video import find_video

CAMERA = (64, 48)  # the replay tests' bundles (tests/support/bundles.py SPECS)
GT = "/camera/labels_gt"
NS = NODE_NAMESPACE


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return (make_tiny_bundle(root / "reef-a", camera=CAMERA, seed=0),
            make_tiny_bundle(root / "reef-b", camera=CAMERA, seed=1, k=4,
                             enhancement=EnhanceSettings.raw()))


@pytest.fixture(scope="module")
def dive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``uwstego synth`` bag with ground truth: 12 frames of 96x64."""
    pytest.importorskip("uwstego.training.synth.sequence")
    from uwstego.training.synth.settings import DiveSettings
    from uwstego.training.synth.writer import write_dive

    out = tmp_path_factory.mktemp("dive") / "dive"
    write_dive(DiveSettings(frames=12, width=96, height=64, seed=2), out, folders=False,
               bag=True)
    return out / "bag"


def settings(**kw) -> ReplaySettings:
    return ReplaySettings(backend="onnxruntime", progress=False, **kw)


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory: pytest.TempPathFactory, dive: Path,
                   bundles: tuple[Path, Path]) -> Path:
    report = tmp_path_factory.mktemp("cmp") / "report"
    replay(dive, bundles[0], settings(gt_topic=GT), report_dir=report, compare=bundles[1])
    return report


def test_synth_bags_name_their_classes_and_the_report_uses_them(dive, compare_report,
                                                                 tmp_path):
    from uwstego.training.synth.classes import CLASS_NAMES

    assert bag_class_names(dive, GT) == CLASS_NAMES
    assert bag_class_names(dive, "/camera/image_raw") is None  # no names for that topic
    summary = read_summary(compare_report / SUMMARY_FILE)
    for model in summary.models:  # no --gt-names given
        assert list(model.ground_truth.scores.per_class_iou) == list(CLASS_NAMES)
        assert model.ground_truth.n_classes == len(CLASS_NAMES)
    page = (compare_report / "index.html").read_text()
    assert "class_0" not in page and all(f"<td>{name}</td>" in page for name in CLASS_NAMES)

    # A bag without the key, and one whose entry is not a list of names, name nothing.
    plain = tmp_path / "plain"
    with BagWriter(plain) as bag:
        bag.write_image(GT, 1, np.zeros((4, 4), np.uint8), "mono8")
    assert bag_class_names(plain, GT) is None
    odd = tmp_path / "odd"
    with BagWriter(odd) as bag:
        bag.set_class_names({GT: []})
        bag.write_image(GT, 1, np.zeros((4, 4), np.uint8), "mono8")
    assert CLASS_NAMES_KEY in (odd / "metadata.yaml").read_text()
    assert bag_class_names(odd, GT) is None


def test_models_are_named_by_bundle_with_one_colour_each(compare_report):
    summary = read_summary(compare_report / SUMMARY_FILE)
    # Each bundle's own name (`export --name`, in its provenance), whatever its folder.
    names = [load_bundle(Path(m.bundle.path)).meta.provenance["name"] for m in summary.models]
    assert [m.bundle.label for m in summary.models] == names and len(set(names)) == 2
    page = (compare_report / "index.html").read_text()
    colours = dict(re.findall(r'<span class="model" style="border-color:(#[0-9a-f]{6})">'
                              r"([^<]+)</span>", page))
    assert set(colours.values()) == set(names) and len(colours) == 2


def test_tables_per_class_confusion_and_run_facts(compare_report):
    summary = read_summary(compare_report / SUMMARY_FILE)
    page = (compare_report / "index.html").read_text()
    for header in ("colour", "coverage (% of pixels)", "matched ground-truth class", "IoU (%)"):
        assert f"<th>{header}</th>" in page
    n_classes = sum(len(m.bundle.classes) for m in summary.models)
    classes = page.split("<h2>Classes</h2>")[1].split("<h2>")[0]
    assert classes.count('class="swatch"') == n_classes  # one per class of every model
    for model in summary.models:
        scores = model.ground_truth.scores
        assert len(scores.confusion) == len(model.bundle.classes)
        assert sum(map(sum, scores.confusion)) == scores.pixels  # every scored pixel
        for r, g, b in model.bundle.class_colors:
            assert f"background:rgb({r},{g},{b})" in page
    assert "confusion.png" in summary.outputs.plots and 'src="confusion.png"' in page
    for fact in ("<td>bag</td>", "<td>topic</td>", "bundle under test", "provenance",
                 "backend", "frames processed", "frames skipped", "damaged parts of the bag"):
        assert fact in page
    assert summary.models[0].bundle.provenance["exporter"] in page


def test_frames_to_look_at_with_their_reasons(compare_report):
    summary = read_summary(compare_report / SUMMARY_FILE)
    looks = summary.outputs.looks
    reasons = [r for look in looks for r in look.reasons]
    for kind in ("lowest confidence", "models disagree most", "most label flicker",
                 "worst scored against the ground truth"):
        assert any(r.startswith(kind) for r in reasons), kind
    page = (compare_report / "index.html").read_text()
    assert "<h2>Frames to look at</h2>" in page
    worst = min(v for v in summary.primary.ground_truth.scores.over_time["mIoU"]
                if v is not None)
    assert any(f"mIoU {worst:.1f}%" in r for r in reasons)  # the worst frame is among them
    for look in looks:
        full, thumb = (cv2.imread(str(compare_report / f)) for f in (look.image, look.thumbnail))
        # input | two overlays | ground truth, 96 px each; thumbnails shrink wider panels only
        assert full.shape[1] == 4 * 96 and thumb.shape == full.shape
        assert f'<a href="{look.image}"><img src="{look.thumbnail}"' in page
        assert f"t = {look.t_s:.2f} s" in page
        assert summary.frames_index[look.position] == look.index


def test_compare_video_is_side_by_side_and_captioned(compare_report):
    video = cv2.VideoCapture(str(compare_report / find_video(compare_report)))
    ok, frame = video.read()
    video.release()
    assert ok and frame.shape[:2] == (64, 2 * 96)  # two 96x64 panels
    band, below = frame[:16].astype(float), frame[24:].astype(float)
    for half in (slice(0, 96), slice(96, 192)):  # each panel's dark band with white text
        assert band[:, half].mean() < below[:, half].mean()
        assert band[:, half].max() > 180


def _sizes(bag: Path) -> dict[str, tuple[str, int]]:
    """Per topic: message type and total stored bytes."""
    with AnyReader([bag], default_typestore=typestore()) as reader:
        out: dict[str, tuple[str, int]] = {}
        for conn, _, raw in reader.messages(reader.connections):
            kind, size = out.get(conn.topic, (conn.msgtype, 0))
            out[conn.topic] = (kind, size + len(raw))
        return out


def test_output_bag_size_options(tmp_path, dive, bundles):
    runs = {"default": {}, "raw": dict(bag_overlay="raw", bag_confidence="32FC1"),
            "mono8": dict(bag_confidence="mono8"), "off": dict(bag_overlay="off",
                                                              bag_confidence="off")}
    sizes = {}
    for name, options in runs.items():
        replay(dive, bundles[0], settings(**options), out_bag=tmp_path / name)
        sizes[name] = _sizes(tmp_path / name)
    default, raw, mono8, off = (sizes[k] for k in runs)
    assert default[f"{NS}/overlay/compressed"][0] == "sensor_msgs/msg/CompressedImage"
    assert f"{NS}/overlay" not in default
    assert raw[f"{NS}/overlay"][0] == "sensor_msgs/msg/Image"
    assert default[f"{NS}/overlay/compressed"][1] < raw[f"{NS}/overlay"][1]
    assert default[f"{NS}/confidence"][1] < raw[f"{NS}/confidence"][1]  # 2 bytes, not 4
    assert mono8[f"{NS}/confidence"][1] < default[f"{NS}/confidence"][1]
    assert f"{NS}/confidence/scale" not in raw  # 32FC1 needs no scale
    assert not any("overlay" in t or "confidence" in t for t in off)
    assert f"{NS}/labels" in off and f"{NS}/coverage" in off
    with AnyReader([tmp_path / "mono8"], default_typestore=typestore()) as reader:
        conn = [c for c in reader.connections if c.topic == f"{NS}/confidence/scale"]
        values = [reader.deserialize(raw_msg, c.msgtype).data
                  for c, _, raw_msg in reader.messages(conn)]
    assert values == [pytest.approx(1 / 255)] * 12
    with pytest.raises(ValueError, match="overlay must be one of"):
        settings(bag_overlay="png")


CHECK_PAGE = """new Promise(resolve => {
  const video = document.querySelector("video");
  const report = () => resolve({
    duration: video.duration, readyState: video.readyState,
    error: video.error && video.error.message,
    images: Array.from(document.images).map(i => [i.getAttribute("src"), i.naturalWidth])});
  if (video.readyState >= 2) { report(); return; }
  video.addEventListener("canplay", report);
  video.addEventListener("error", report);
  setTimeout(report, 20000);
})"""


@pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))
def test_the_report_plays_in_a_real_browser(compare_report, tmp_path):
    with serve(compare_report) as url, chromium() as page:
        page.open(url + "index.html")
        state = page.evaluate(CHECK_PAGE)
        problems = page.problems.errors
    assert state["error"] is None and state["duration"] > 0 and state["readyState"] >= 2
    summary = read_summary(compare_report / SUMMARY_FILE)
    # The plots, the frames to look at and the survey's two figures (the dive has navigation).
    survey = json.loads((compare_report / "survey" / "survey.json").read_text())
    figures = [f for f in survey["files"] if f.endswith(".png")]
    assert len(figures) == 2
    assert len(state["images"]) == (len(summary.outputs.plots) + len(summary.outputs.looks)
                                    + len(figures))
    assert [src for src, width in state["images"] if not width > 0] == []
    assert problems == []

    # The same checks catch a broken page: a missing image and a script error.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.html").write_text('<img src="missing.png"><script>nosuch();</script>')
    with serve(broken) as url, chromium() as page:
        page.open(url + "index.html")
        widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        problems = page.problems.errors
    assert widths == [0]
    assert any("missing.png" in p and "404" in p for p in problems), problems
    assert any("nosuch" in p for p in problems), problems
    json.dumps(problems)  # plain strings, for the assertion message


def test_model_names_prefer_the_bundles_own_name_and_stay_distinct():
    from uwstego.replay.summary import BundleDoc, model_labels

    def doc(path: str, name: str = "") -> BundleDoc:
        return BundleDoc(path=path, model_sha256="0" * 64, classes=("a",),
                         class_colors=((0, 0, 0),), backend={}, name=name)

    assert doc("/x/reef-a").label == "reef-a"
    assert doc("/x/bundle", name="reef 2026-11").label == "reef 2026-11"
    assert model_labels([doc("/a/bundle"), doc("/b/bundle"), doc("/c/other")]) == [
        "bundle (1)", "bundle (2)", "other"]


def test_the_browser_test_says_why_it_skips(monkeypatch):
    import tests.support.browser as browser

    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", ())
    monkeypatch.setenv("UWSTEGO_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(browser.shutil, "which", lambda _: None)
    assert "chromium is not installed" in browser.why_no_browser()


def _retitled(bundle: Path, out: Path, **training: object) -> Path:
    """A copy of ``bundle`` whose provenance names it and records ``training`` facts (as
    ``training/pipeline.py`` writes them)."""
    shutil.copytree(bundle, out)
    meta = json.loads((out / "bundle.json").read_text())
    meta["provenance"]["name"] = "reef-random"
    meta["provenance"]["training"] = {**meta["provenance"].get("training", {}), **training}
    (out / "bundle.json").write_text(json.dumps(meta))
    return out


def test_stretched_frames_and_random_weights_warn_in_the_terminal_and_the_report(
        tmp_path: Path, bundles: tuple[Path, Path]):
    bundle = _retitled(bundles[0], tmp_path / "b", random_weights=True, weights_file=None,
                       train_settings={"steps": 20, "clusters": 5}, images=12)
    bag = media_bag(tmp_path / "dive", [scene(i, h=48, w=96) for i in range(3)])  # 2:1, not 4:3
    report = tmp_path / "report"
    outcome = run_tool("uwstego", "replay", bag, "--bundle", bundle, "--report", report,
                       "--backend", "onnxruntime", "--no-progress")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    warnings = [line for line in outcome.stderr.splitlines() if " WARNING " in line]
    stretched = [line for line in warnings if "stretched" in line]
    assert len(stretched) == 1 and "96x48" in stretched[0] and "64x48" in stretched[0]
    assert sum("random weights" in line for line in warnings) == 1
    summary = read_summary(report / SUMMARY_FILE)
    assert summary.primary.bundle.label == "reef-random"  # the provenance's name, not "b"
    page = (report / "index.html").read_text()
    banners = re.findall(r'<p class="warning">(.*?)</p>', page)
    assert len(banners) == 2 and any("random weights" in b for b in banners) \
        and any("96x48" in b and "64x48" in b for b in banners)
    run_table = page.split("<h2>Run</h2>")[1].split("<h2>")[0]
    for fact, value in (("weights", "random"), ("training steps", "20"), ("clusters", "5"),
                        ("backbone", summary.primary.bundle.trust["backbone"])):
        assert f"<td>  {fact}</td><td>{value}</td>" in run_table, fact


def test_the_confusion_matrix_has_ground_truth_on_its_rows(compare_report):
    from uwstego.replay.plots import confusion_share

    summary = read_summary(compare_report / SUMMARY_FILE)
    for model in summary.models:
        scores = model.ground_truth.scores
        share = confusion_share(scores.confusion)
        assert share.shape == (len(scores.per_class_iou), len(model.bundle.classes))
        seen = share.sum(axis=1) > 0
        assert np.allclose(share.sum(axis=1)[seen], 100.0)
    assert "Each row: how one ground-truth class" in (compare_report / "index.html").read_text()


def test_frames_to_look_at_never_pick_a_reason_with_nothing_to_show(tmp_path, bundles):
    pytest.importorskip("uwstego.training.synth.sequence")
    from dataclasses import replace as swap

    from uwstego.replay.looks import pick_frames
    from uwstego.replay.metrics import scene_cuts
    from uwstego.training.synth.settings import DiveSettings
    from uwstego.training.synth.writer import write_dive

    # A dive whose water, light and depth are redrawn every 8 frames: cuts at 8 and 16.
    write_dive(DiveSettings(frames=24, width=64, height=64, seed=3, segment_frames=8),
               tmp_path / "dive", folders=False, bag=True)
    summary = replay(tmp_path / "dive" / "bag", bundles[0], settings()).summary
    assert scene_cuts(summary.frames_input_change) == {8, 16}
    flicker = summary.primary.series.flicker
    ranked = sorted((v, i) for i, v in enumerate(flicker) if v is not None and v == v)
    assert {8, 16} & {i for _, i in ranked[-3:]}, "the cuts flicker most: the test means it"
    picked = pick_frames(summary)
    for position in (8, 16):
        assert not any(r.startswith("most label flicker") for r in picked.get(position, []))
    assert any(r.startswith("most label flicker") for rs in picked.values() for r in rs)

    # No novel pixel anywhere (as a calibrated bundle on familiar water): no "most novel" pick.
    calm = swap(summary, models=(swap(summary.primary, series=swap(
        summary.primary.series, novel_fraction=(0.0,) * len(flicker))),))
    assert not any(r.startswith("most novel") for rs in pick_frames(calm).values() for r in rs)
