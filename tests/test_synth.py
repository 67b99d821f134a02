from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from uwstego.bags import bag_info, iter_bag_images
from uwstego.training.synth import (
    CLASS_NAMES,
    CLASSES,
    IGNORE,
    Dive,
    DiveSettings,
    colourise,
    generate_dive,
    palette,
    write_dive,
)
from uwstego.training.synth.actors import draw_diver, sample_diver
from uwstego.training.synth.classes import CABLE, DIVER, FISH, SAND, WATER
from uwstego.training.synth.cli import register
from uwstego.training.synth.degrade import Degrader, Snow, sample_conditions
from uwstego.training.synth.noise import periodic_noise
from uwstego.training.synth.scene import Camera, Layout, Pose, render_seabed
from uwstego.training.synth.world import WORLD_M, build_world

SMALL = dict(width=96, height=72, frames=3, fps=10.0)


def frames(**changes: object) -> list:
    return list(generate_dive(DiveSettings(**{**SMALL, **changes})))


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a, b, c = frames(seed=7), frames(seed=7), frames(seed=8)
    for fa, fb in zip(a, b, strict=True):
        assert fa.rgb.tobytes() == fb.rgb.tobytes()
        assert fa.labels.tobytes() == fb.labels.tobytes()
        assert fa.range_m.tobytes() == fb.range_m.tobytes()
        assert json.dumps(fa.params) == json.dumps(fb.params)
    assert a[0].rgb.tobytes() != c[0].rgb.tobytes()
    assert a[0].labels.tobytes() != c[0].labels.tobytes()


def test_frames_are_random_access() -> None:
    settings = DiveSettings(seed=3, **SMALL)
    last = list(generate_dive(settings))[-1]
    again = Dive(settings).frame(2)  # a fresh dive, no earlier frames rendered
    assert again.rgb.tobytes() == last.rgb.tobytes()
    assert again.labels.tobytes() == last.labels.tobytes()
    assert again.t_ns - settings.start_ns == round(2 * 1e9 / settings.fps)


@pytest.mark.parametrize("size", [(64, 64), (97, 65)])
def test_shapes_classes_and_water_geometry(size: tuple[int, int]) -> None:
    for frame in frames(seed=11, width=size[0], height=size[1], frames=2):
        assert frame.rgb.shape == (size[1], size[0], 3) and frame.rgb.dtype == np.uint8
        assert frame.labels.shape == frame.range_m.shape == (size[1], size[0])
        assert frame.range_m.dtype == np.float32
        assert set(np.unique(frame.labels)) <= set(range(len(CLASSES)))
        water = frame.labels == WATER
        # Open water and only open water lies at infinite range; everything else is in front.
        np.testing.assert_array_equal(water, ~np.isfinite(frame.range_m))
        assert (frame.range_m[~water] > 0).all()
        json.dumps(frame.params)


def test_palette_covers_every_class() -> None:
    table = palette()
    assert len(set(CLASS_NAMES)) == len(CLASSES) == 9
    assert len({tuple(c.color) for c in CLASSES}) == len(CLASSES)
    for i, cls in enumerate(CLASSES):
        assert tuple(table[i]) == cls.color
    assert tuple(table[IGNORE]) == (255, 255, 255)
    labels = np.array([[0, 1], [8, IGNORE]], np.uint8)
    assert colourise(labels).shape == (2, 2, 3)


def _cast(camera: Camera, pose: Pose) -> np.ndarray:
    """Independent float64 ray casting: range to the floor (inf beyond 60 m) per pixel."""
    rays = camera.rays.reshape(3, -1).T.astype(np.float64) @ pose.rotation.T
    t = np.where(rays[:, 2] < 0, -pose.altitude / np.minimum(rays[:, 2], -1e-12), np.inf)
    t[t > 60] = np.inf
    return t, rays


@pytest.mark.parametrize("altitude,exact", [(14.0, True), (2.0, False)])
def test_labels_are_the_projected_layout(altitude: float, exact: bool) -> None:
    world = build_world(np.random.default_rng(5), 256, cable=True)
    camera = Camera(80, 60, 70.0)
    pose = Pose(x=7.3, y=-31.9, altitude=altitude, yaw=0.7, pitch=np.radians(55), roll=0.05)
    layout = render_seabed(world, camera, pose)
    t, rays = _cast(camera, pose)
    hit = np.isfinite(t)
    np.testing.assert_array_equal(layout.labels.reshape(-1)[~hit], WATER)
    np.testing.assert_allclose(layout.range_m.reshape(-1)[hit], t[hit], rtol=1e-4)
    n = world.size_px
    xs = (pose.x + t[hit] * rays[hit, 0]) % WORLD_M / world.texel_m
    ys = (pose.y + t[hit] * rays[hit, 1]) % WORLD_M / world.texel_m
    gx, gy = layout.ground_x.reshape(-1)[hit], layout.ground_y.reshape(-1)[hit]
    # Texture lookups land on the intersection; up close they are shifted by a fraction of a
    # texel to break up texel staircases at class borders.
    shift = np.hypot((gx - xs + n / 2) % n - n / 2, (gy - ys + n / 2) % n - n / 2)
    assert shift.max() < (1e-2 if exact else 2.0)
    # cv2 puts texel centres at integer coordinates, so the nearest texel is the rounded one;
    # lookups within 1e-3 of a texel edge may fall either way in float32: compare the others.
    at = (xs, ys) if exact else (gx.astype(np.float64), gy.astype(np.float64))
    clear = (np.abs(at[0] % 1 - 0.5) > 1e-3) & (np.abs(at[1] % 1 - 0.5) > 1e-3)
    expected = world.labels[np.floor(at[1] + 0.5).astype(int) % n,
                            np.floor(at[0] + 0.5).astype(int) % n]
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(layout.labels.reshape(-1)[hit][clear], expected[clear])


def test_nadir_camera_sees_the_floor_at_its_altitude() -> None:
    world = build_world(np.random.default_rng(2), 256, cable=False)
    camera = Camera(65, 65, 60.0)
    layout = render_seabed(world, camera, Pose(3.0, 4.0, 1.5, yaw=0.0, pitch=np.pi / 2))
    assert layout.range_m[32, 32] == pytest.approx(1.5, rel=1e-5)
    assert (layout.range_m >= 1.5 - 1e-5).all() and (layout.labels != WATER).all()
    assert layout.labels[32, 32] == world.labels[round(4.0 / world.texel_m),
                                                 round(3.0 / world.texel_m)]


def test_world_holds_its_classes_and_tiles_seamlessly() -> None:
    world = build_world(np.random.default_rng(9), 256, cable=True)
    present = set(np.unique(world.labels))
    assert {SAND, CABLE} <= present and present <= set(range(len(CLASSES)))
    assert world.albedo.shape == (256, 256, 4) and world.cable is not None
    field = periodic_noise(np.random.default_rng(0), 128, 8)
    # The jump across the wrap-around seam is no larger than between any neighbours inside.
    inner = np.abs(np.diff(field, axis=1)).max()
    assert np.abs(field[:, 0] - field[:, -1]).max() <= inner + 1e-6


def test_fish_and_diver_are_labelled_in_front_of_the_floor() -> None:
    world = build_world(np.random.default_rng(1), 256, cable=False)
    camera = Camera(120, 90, 70.0)
    pose = Pose(1.0, 1.0, 2.5, yaw=0.0, pitch=np.radians(40))
    layout = render_seabed(world, camera, pose)
    floor = layout.range_m.copy()
    diver = dataclasses.replace(sample_diver(np.random.default_rng(0), 0.0, 10.0),
                                sweep_m=0.0, ahead_m=3.0)
    draw_diver(layout, camera, pose, diver, lambda t: (np.array([1.0, 1.0]), 0.0), 1.0)
    mask = layout.labels == DIVER
    assert mask.sum() > 50
    assert (layout.range_m[mask] < floor[mask]).all()

    found_fish = False
    for seed in range(4):
        frame = frames(seed=seed, frames=1, width=128, height=96, fish_density=200.0)[0]
        fish = frame.labels == FISH
        if fish.any():
            found_fish = True
            assert np.isfinite(frame.range_m[fish]).all()
    assert found_fish


def test_snow_and_degradation_never_touch_labels() -> None:
    base = dict(seed=21, night_prob=1.0)  # lamps on: snow is bright
    clean, no_snow, snowy = (frames(**base, degrade=False), frames(**base, snow_max=0.0),
                             frames(**base, snow_max=400.0))
    for a, b, c in zip(clean, no_snow, snowy, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(b.labels, c.labels)
        np.testing.assert_array_equal(b.range_m, c.range_m)
        assert not np.array_equal(a.rgb, b.rgb)
    assert sum(f.params["snow_count"] for f in snowy) > 0
    assert all(f.params["snow_count"] == 0 for f in no_snow)
    assert any(not np.array_equal(b.rgb, c.rgb) for b, c in zip(no_snow, snowy, strict=True))


def test_consecutive_frames_agree() -> None:
    seq = frames(seed=4, frames=4, width=128, height=96, fps=15.0)
    for a, b in itertools.pairwise(seq):
        assert (a.labels == b.labels).mean() > 0.7


@pytest.mark.parametrize("water,lost", [("I", 0), ("9C", 2)])
def test_water_type_removes_its_colour_with_range(water: str, lost: int) -> None:
    """Along the direct path ocean water loses red first, turbid coastal water blue first."""
    camera = Camera(64, 64, 60.0)
    settings = DiveSettings(water_types=(water,))
    cond = dataclasses.replace(
        sample_conditions(np.random.default_rng(0), settings, 2.0, 3.0),
        daylight=True, lamp_power=0.0, backscatter_weight=0.0, caustics=0.0, patchiness=0.0,
        vignetting=0.0,
        jpeg_quality=0, full_well=1e9, read_noise=0.0, seabed_depth_m=3.0)
    world = build_world(np.random.default_rng(0), 256, cable=False)
    no_snow = Snow(*(np.zeros((0, 2)),) * 2, *(np.zeros(0),) * 4)
    ratios = []
    for z in (1.0, 6.0):
        grey = np.zeros((64, 64, 4), np.uint8)
        grey[..., :3] = 160
        layout = Layout(labels=np.full((64, 64), SAND, np.uint8),
                        range_m=np.full((64, 64), z, np.float32), albedo=grey, detail=None,
                        ground_x=np.zeros((64, 64), np.float32),
                        ground_y=np.zeros((64, 64), np.float32))
        rgb, _ = Degrader(camera, 0).degrade(layout, world, cond, 1.0, 0.0, no_snow,
                                             np.random.default_rng(0))
        means = rgb.reshape(-1, 3).mean(0)
        ratios.append(means[lost] / means[1])
    assert ratios[1] < ratios[0]


def test_settings_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="outside"):
        DiveSettings(width=32)
    with pytest.raises(ValueError, match="unknown water types"):
        DiveSettings(water_types=("muddy",))
    with pytest.raises(ValueError, match="probability"):
        DiveSettings(diver_prob=1.5)
    settings = DiveSettings(seed=4, water_types=("I", "9C"))
    assert DiveSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_write_folders_and_bag_then_resume(tmp_path: Path) -> None:
    settings = DiveSettings(seed=5, frames=4, width=80, height=64)
    report = write_dive(settings, tmp_path, folders=True, bag=True, storage="sqlite3")
    assert report.complete and report.rendered == 4 and report.reused == 0
    expected = list(generate_dive(settings))
    for frame in expected:
        name = f"{frame.index:06d}.png"
        rgb = cv2.cvtColor(read_png(tmp_path / "images" / name), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(rgb, frame.rgb)
        np.testing.assert_array_equal(read_png(tmp_path / "labels" / name), frame.labels)
        mm = read_png(tmp_path / "range" / name)
        assert mm.dtype == np.uint16
        finite = np.isfinite(frame.range_m)
        np.testing.assert_array_equal(mm == 0, ~finite)
        np.testing.assert_allclose(mm[finite] / 1000, frame.range_m[finite], atol=6e-4)

    bag = tmp_path / "bag"
    assert bag_info(bag).image_topics == {"/camera/image_raw": "sensor_msgs/msg/Image",
                                      "/camera/labels_gt": "sensor_msgs/msg/Image"}
    assert bag_info(bag).counts["/camera/camera_info"] == 4
    images = list(iter_bag_images(bag, "/camera/image_raw"))
    labels = list(iter_bag_images(bag, "/camera/labels_gt"))
    for img, lab, frame in zip(images, labels, expected, strict=True):
        assert img.stamp_ns == img.t_ns == frame.t_ns
        np.testing.assert_array_equal(img.rgb, frame.rgb)
        np.testing.assert_array_equal(lab.rgb[..., 0], frame.labels)

    summary = json.loads((tmp_path / "dive.json").read_text())
    assert summary["complete"] and len(summary["frames"]) == 4
    assert [c["name"] for c in summary["classes"]] == list(CLASS_NAMES)
    assert summary["frames"][2] == expected[2].params

    (tmp_path / "labels" / "000002.png").unlink()
    again = write_dive(settings, tmp_path, folders=True)
    assert again.complete and again.rendered == 1 and again.reused == 3
    np.testing.assert_array_equal(read_png(tmp_path / "labels" / "000002.png"),
                                  expected[2].labels)
    assert write_dive(settings, tmp_path, folders=True, bag=True).rendered == 0  # all there
    with pytest.raises(ValueError, match="other settings"):
        write_dive(dataclasses.replace(settings, seed=6), tmp_path)


def test_cli_writes_a_compressed_bag(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["synth", str(tmp_path / "out"), "--frames", "2", "--size", "64x64",
                              "--format", "bag", "--compressed", "--seed", "3"])
    assert args.func(args) == 0
    bag = tmp_path / "out" / "bag"
    assert bag_info(bag).image_topics["/camera/image_raw/compressed"].endswith("CompressedImage")
    assert len(list(iter_bag_images(bag, "/camera/image_raw/compressed"))) == 2
    assert not (tmp_path / "out" / "images").exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "x", "--size", "640by480"])


def test_interrupted_write_is_kept_reported_and_resumed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = DiveSettings(seed=8, frames=4, width=64, height=64)
    real_frame = Dive.frame

    def crash_at_two(self: Dive, index: int) -> object:  # fault injection: Ctrl-C at frame 2
        if index == 2:
            raise KeyboardInterrupt
        return real_frame(self, index)

    monkeypatch.setattr(Dive, "frame", crash_at_two)
    with pytest.raises(KeyboardInterrupt):
        write_dive(settings, tmp_path, folders=True, bag=True)
    summary = json.loads((tmp_path / "dive.json").read_text())
    assert not summary["complete"] and [f["index"] for f in summary["frames"]] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["000000.png",
                                                                       "000001.png"]
    assert bag_info(tmp_path / "bag").counts["/camera/labels_gt"] == 2  # partial, valid

    monkeypatch.setattr(Dive, "frame", real_frame)
    report = write_dive(settings, tmp_path, folders=True, bag=True)
    assert report.complete and report.reused == 2 and report.rendered == 4  # bag rewritten
    assert bag_info(tmp_path / "bag").counts["/camera/labels_gt"] == 4
    assert json.loads((tmp_path / "dive.json").read_text())["complete"]


@pytest.mark.parametrize("held", ["debris", "diver"])
def test_hold_out_renders_the_same_dive_without_the_class(held: str) -> None:
    from uwstego.training.synth.classes import DEBRIS

    cls = {"debris": DEBRIS, "diver": DIVER}[held]
    base = dict(seed=3, frames=3, width=160, height=120, segment_frames=3, diver_prob=1.0,
                degrade=False)
    full = [f.labels for f in generate_dive(DiveSettings(**base))]
    without = [f.labels for f in generate_dive(DiveSettings(**base, hold_out=held))]
    assert any((labels == cls).any() for labels in full)
    for with_class, held_out in zip(full, without, strict=True):
        assert not (held_out == cls).any()
        keep = with_class != cls
        np.testing.assert_array_equal(held_out[keep], with_class[keep])


def test_hold_out_names_an_actor_class() -> None:
    with pytest.raises(ValueError, match="hold_out"):
        DiveSettings(hold_out="sand")
    assert not (np.concatenate([f.labels.ravel() for f in generate_dive(DiveSettings(
        seed=1, frames=2, width=96, height=64, cable_prob=1.0, hold_out="cable"))]) == CABLE).any()
