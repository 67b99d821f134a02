"""Frame sources, sampling, bad-item accounting, crops and the training-side enhancement."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.media import TOPIC, scene, write_bag, write_image, write_video
from uwstego.enhance import Enhancer, EnhanceSettings
from uwstego.training.data.crops import (
    crop_box,
    crop_names,
    enhance_params,
    make_crops,
    normalise,
    render,
    resize_center_crop,
)
from uwstego.training.data.sources import (
    EmptyDatasetError,
    ReadReport,
    RosBag,
    VideoFile,
    as_sources,
    check_not_empty,
    iter_frames,
    read_frame,
    source_from_path,
)


def _frames(sources):
    report = ReadReport()
    return list(iter_frames(as_sources(sources), report)), report


def test_image_folder_is_recursive_sorted_and_counts_bad_files(tmp_path) -> None:
    root = tmp_path / "imgs"
    write_image(root / "b.png", scene(0))
    write_image(root / "sub" / "a.JPG", scene(1))
    write_image(root / "sub" / "deeper" / "c.bmp", scene(2))
    write_image(root / "d.tiff", scene(3))
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    jpg = cv2.imencode(".jpg", scene(4))[1].tobytes()
    (root / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    frames, report = _frames(root)
    names = [f.ref.path.split("imgs/")[1] for f in frames]
    assert names == ["b.png", "d.tiff", "sub/a.JPG", "sub/deeper/c.bmp"]
    assert frames[0].rgb.shape == (64, 80, 3) and frames[0].rgb.dtype == np.uint8
    assert np.abs(frames[0].rgb.astype(int) - scene(0)).max() == 0  # PNG is lossless, RGB order
    assert (report.seen, report.kept) == (6, 4)
    skipped = {e["item"].split("imgs/")[1]: e["reason"] for e in report.skipped}
    assert set(skipped) == {"broken.png", "cut.jpg"}
    assert "truncated JPEG" in skipped["cut.jpg"]
    assert len({f.ref.sequence for f in frames}) == 4  # every still is its own sequence


def test_video_stride_and_rate_sampling(tmp_path) -> None:
    video = write_video(tmp_path / "dive.avi", [scene(i) for i in range(9)], fps=10)
    frames, report = _frames([VideoFile(video, stride=3)])
    assert [f.ref.index for f in frames] == list(range(9))  # all decoded, for the EMA
    assert [f.ref.index for f in frames if f.keep] == [0, 3, 6]
    assert report.kept == 3 and not report.skipped
    frames, _ = _frames([VideoFile(video, rate_hz=2.5)])  # one frame per 0.4 s at 10 fps
    assert [f.ref.index for f in frames if f.keep] == [0, 4, 8]
    with pytest.raises(ValueError, match="stride"):
        VideoFile(video, stride=0)


def test_corrupt_video_is_skipped_and_listed(tmp_path, caplog) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"\0\1\2 not a video" * 50)
    good = write_video(tmp_path / "good.avi", [scene(i) for i in range(2)])
    with caplog.at_level(logging.WARNING):
        frames, report = _frames([tmp_path / "bad.mp4", good])
    assert len(frames) == 2 and report.kept == 2
    assert [e["item"] for e in report.skipped] == [str(tmp_path / "bad.mp4")]
    assert "cannot be opened as a video" in caplog.text


def test_bag_topics_sampling_and_bad_frames(tmp_path) -> None:
    images = [scene(i) for i in range(5)]
    bag = write_bag(tmp_path / "raw", images)
    frames, report = _frames([RosBag(bag, stride=2)])
    assert report.kept == 3 and not report.skipped
    assert [f.ref.index for f in frames if f.keep] == [0, 2, 4]
    assert all(np.array_equal(f.rgb, img) for f, img in zip(frames, images, strict=True))
    assert {f.ref.sequence for f in frames} == {f"{bag}#{TOPIC}"}
    assert source_from_path(bag) == RosBag(bag)

    comp = write_bag(tmp_path / "comp", images[:3], compressed=True)
    frames, _ = _frames([RosBag(comp, rate_hz=5.0)])  # 10 Hz recording -> every other
    assert [f.ref.index for f in frames if f.keep] == [0, 2]
    assert frames[0].ref.topic == TOPIC + "/compressed"


def test_unreadable_bag_is_skipped_and_counted(tmp_path) -> None:
    (tmp_path / "nobag").mkdir()
    (tmp_path / "nobag" / "metadata.yaml").write_text("garbage: [")
    good = write_image(tmp_path / "imgs" / "a.png", scene(0))
    frames, report = _frames([RosBag(tmp_path / "nobag"), good.parent])
    assert len(frames) == 1
    assert report.skipped[0]["item"] == str(tmp_path / "nobag")


def test_mixed_sources_in_one_run_and_path_detection(tmp_path) -> None:
    folder = write_image(tmp_path / "imgs" / "x.png", scene(0)).parent
    video = write_video(tmp_path / "v.avi", [scene(1), scene(2)])
    bag = write_bag(tmp_path / "bag", [scene(3)])
    sources = as_sources([folder, video, bag])
    assert [type(s).__name__ for s in sources] == ["ImageFolder", "VideoFile", "RosBag"]
    frames, report = _frames(sources)
    assert [f.ref.kind for f in frames] == ["image", "video", "video", "bag"]
    assert report.kept == 4
    with pytest.raises(ValueError, match="not an image folder, a video"):
        source_from_path(tmp_path / "imgs" / "x.png")
    with pytest.raises(FileNotFoundError):
        source_from_path(tmp_path / "absent.avi")


def test_empty_and_all_corrupt_datasets_stop_clearly(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    sources = as_sources(tmp_path / "empty")
    _, report = _frames(sources)
    with pytest.raises(EmptyDatasetError, match="no frames found"):
        check_not_empty(report, sources)
    (tmp_path / "bad").mkdir()
    for i in range(2):
        (tmp_path / "bad" / f"{i}.png").write_bytes(b"nope")
    sources = as_sources(tmp_path / "bad")
    _, report = _frames(sources)
    with pytest.raises(EmptyDatasetError, match="all 2 items found were unreadable"):
        check_not_empty(report, sources)


def test_read_frame_returns_the_same_frame_again(tmp_path) -> None:
    folder = write_image(tmp_path / "imgs" / "x.png", scene(0)).parent
    video = write_video(tmp_path / "v.avi", [scene(i) for i in range(6)])
    bag = write_bag(tmp_path / "bag", [scene(i) for i in range(4)])
    frames, _ = _frames([folder, video, bag])
    for frame in (frames[0], frames[4], frames[-2]):
        assert np.array_equal(read_frame(frame.ref), frame.rgb), frame.ref


def test_five_crop_geometry_and_sizes() -> None:
    assert crop_box(64, 80, "top_left") == (0, 32, 0, 40)
    assert crop_box(64, 80, "bottom_right") == (32, 64, 40, 80)
    assert crop_box(65, 81, "center") == (16, 48, 20, 60)
    assert crop_box(64, 80, "full") == (0, 64, 0, 80)
    img = np.random.default_rng(0).random((64, 80, 3), dtype=np.float32)
    crops = make_crops(img, "five+full", 56)
    assert len(crops) == len(crop_names("five+full")) == 6
    assert all(c.shape == (56, 56, 3) for c in crops)
    with pytest.raises(ValueError, match="unknown crop type"):
        make_crops(img, "ten", 56)


def test_resize_averages_instead_of_picking_nearest() -> None:
    stripes = np.zeros((128, 160, 3), dtype=np.float32)
    stripes[:, ::2] = 1.0  # one-pixel stripes: nearest neighbour would keep only 0s or 1s
    out = resize_center_crop(stripes, 64)
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(out, 0.5, atol=1e-5)
    up = resize_center_crop(np.ones((32, 48, 3), np.float32), 64)  # enlarging works too
    assert up.shape == (64, 64, 3)


def test_normalise_is_imagenet_chw() -> None:
    batch = normalise([np.full((8, 8, 3), 0.485, np.float32)])
    assert batch.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(batch[0, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize("clahe", [False, True])
def test_enhancement_matches_the_vehicle_chain_with_sequence_state(tmp_path, clahe) -> None:
    settings = EnhanceSettings(clahe=clahe, temporal_alpha=0.3)
    video = write_video(tmp_path / "v.avi", [scene(i) for i in range(6)])
    still = write_image(tmp_path / "imgs" / "x.png", scene(9)).parent
    frames, _ = _frames([VideoFile(video, stride=2), still])
    got = list(enhance_params(iter(frames), settings))
    assert [f.ref.index for f, _ in got] == [0, 2, 4, 0]
    vehicle = Enhancer(settings)  # what the vehicle computes: every frame, in order
    expected = [vehicle.apply(f.rgb) for f in frames[:6]]
    vehicle.reset()
    expected.append(vehicle.apply(frames[6].rgb))
    for (frame, params), want in zip(got, [expected[i] for i in (0, 2, 4, 6)], strict=True):
        np.testing.assert_array_equal(render(frame.rgb, params, settings), want)
    # The EMA really carried state: frame 4 differs from a fresh enhancer's view of it.
    assert not np.allclose(got[2][1], Enhancer(settings).frame_params(frames[4].rgb))


def _real_photos():
    root = Path(os.environ.get("UWSTEGO_DATA", Path(__file__).resolve().parents[1].parent
                               / "shared" / "data" / "underwater")) / "suim" / "images"
    if not root.is_dir():
        pytest.skip(f"underwater photos not found at {root} (set UWSTEGO_DATA)")
    return root


def test_real_underwater_photos_through_the_pipeline() -> None:
    frames, report = _frames(_real_photos())
    assert report.kept == len(frames) >= 1 and not report.skipped
    spread = []
    for frame, params in enhance_params(iter(frames[:4]), EnhanceSettings()):
        img = render(frame.rgb, params, EnhanceSettings())
        crops = make_crops(img, "five+full", 112)
        assert len(crops) == 6 and all(c.shape == (112, 112, 3) for c in crops)
        before = frame.rgb.reshape(-1, 3).mean(axis=0) / 255.0
        after = img.reshape(-1, 3).mean(axis=0)
        spread.append((np.ptp(before), np.ptp(after)))
    # Red compensation + grey world pull the colour casts of real dives towards grey.
    assert all(a < b for b, a in spread), spread
