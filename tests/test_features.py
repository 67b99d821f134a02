"""The feature cache: contents, provenance, resume after an interruption, multi-process reads."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from tests.support.media import scene, write_image, write_video
from uwstego.enhance import EnhanceSettings
from uwstego.training.backbones import build_backbone
from uwstego.training.data.crops import make_crops, normalise, render, to_uint8
from uwstego.training.data.sources import EmptyDatasetError, ReadReport, VideoFile, as_sources
from uwstego.training.features import CacheError, FeatureCache, build_feature_cache

RES = 64
ENH = EnhanceSettings(temporal_alpha=0.5)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("tiny_vit8")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("data")
    folder = root / "imgs"
    for i in range(3):
        write_image(folder / f"{i}.png", scene(i, 64, 96))
    video = write_video(root / "dive.avi", [scene(10 + i) for i in range(6)])
    return [folder, video]


def _sources(data: list[Path]):
    return [data[0], VideoFile(data[1], stride=2)]


def _build(data, backbone, out: Path, **kw) -> FeatureCache:
    kw = {"resolution": RES, "batch_size": 5, "enhancement": ENH, "shard_items": 12, **kw}
    return build_feature_cache(_sources(data), backbone, out, **kw)


@pytest.fixture(scope="module")
def cache(data, backbone, tmp_path_factory) -> FeatureCache:
    return _build(data, backbone, tmp_path_factory.mktemp("cache") / "c")


def test_contents_match_a_direct_backbone_run(cache, backbone) -> None:
    assert len(cache) == 6 * 6  # 3 stills + 3 sampled video frames, six crops each
    assert cache.feature_shape == (48, 8, 8)
    meta = cache.meta
    assert (meta["resolution"], meta["crop_type"], meta["backbone"]) == (RES, "five+full",
                                                                         "tiny_vit8")
    assert meta["enhancement"] == ENH.to_dict() and meta["config"]["patch_size"] == 8
    assert "tiny_vit8-p8-r64-five+full" in cache.key
    assert [s["items"] for s in meta["shards"]] == [12, 12, 12]
    # Recompute item 2 of the second still image (crop "bottom_left") straight from its pixels.
    item = cache.item(8)
    assert (Path(item["path"]).name, item["crop"]) == ("1.png", "bottom_left")
    rgb = scene(1, 64, 96)
    img = render(rgb, np.asarray(item["params"], np.float32), ENH)
    x = torch.from_numpy(normalise([make_crops(img, "five+full", RES)[2]]))
    with torch.no_grad():
        direct = backbone(x)
    torch.testing.assert_close(cache.feats([8]), direct, atol=2e-2, rtol=1e-2)
    assert cache.feats(torch.tensor([8, 0])).dtype == torch.float32


def test_descriptors_are_normalised_means(cache) -> None:
    desc = np.asarray(cache.descriptors)
    assert desc.shape == (36, 48) and desc.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    mean = cache.feats(range(36)).mean(dim=(2, 3))
    expected = torch.nn.functional.normalize(mean, dim=1).numpy()
    np.testing.assert_allclose(desc, expected, atol=5e-3)


def test_provenance_and_load_crop(cache) -> None:
    video_items = [i for i in range(len(cache)) if cache.item(i)["kind"] == "video"]
    assert sorted({cache.item(i)["index"] for i in video_items}) == [0, 2, 4]
    i = video_items[6 + 5]  # the "full" crop of video frame 2
    assert cache.item(i)["crop"] == "full"
    crop = cache.load_crop(i)
    assert crop.shape == (RES, RES, 3) and crop.dtype == np.uint8
    groups, positions = cache.sequences()
    assert len(set(groups[:18].tolist())) == 3 and len(set(groups[18:].tolist())) == 1
    assert positions[18:].tolist() == [0] * 6 + [2] * 6 + [4] * 6


def test_load_crop_is_what_the_backbone_saw(cache) -> None:
    item = cache.item(3)
    img = render(scene(0, 64, 96), np.asarray(item["params"], np.float32), ENH)
    np.testing.assert_array_equal(cache.load_crop(3), to_uint8(make_crops(img, "five+full",
                                                                           RES)[3]))


@dataclass(frozen=True)
class _Interrupted:
    """A real source whose reading is cut off by Ctrl-C after ``after`` frames."""

    inner: object
    after: int

    def frames(self, report: ReadReport):
        for n, frame in enumerate(self.inner.frames(report)):
            if n == self.after:
                raise KeyboardInterrupt
            yield frame

    def describe(self):
        return self.inner.describe()


def test_resume_after_interruption(data, backbone, cache, tmp_path) -> None:
    out = tmp_path / "c"
    first, second = as_sources(_sources(data))
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache([first, _Interrupted(second, after=3)], backbone, out,
                            resolution=RES, batch_size=5, enhancement=ENH, shard_items=12)
    meta = json.loads((out / "meta.json").read_text())
    # 2 frames a shard: the 3 stills and video frame 0 made it, video frame 2 was pending.
    assert not meta["complete"] and len(list(out.glob("shard_*.json"))) == 2
    with pytest.raises(CacheError, match="did not finish"):
        FeatureCache.open(out)
    done = [(out / f"shard_0000{i}.npy").stat().st_mtime_ns for i in (0, 1)]
    (out / ".shard_00002.npy.x1y2.npy").write_bytes(b"half-written by a killed build")
    resumed = _build(data, backbone, out)
    assert [(out / f"shard_0000{i}.npy").stat().st_mtime_ns for i in (0, 1)] == done
    assert not list(out.glob(".shard_*"))
    assert len(resumed) == len(cache)
    torch.testing.assert_close(resumed.feats(range(36)), cache.feats(range(36)))
    np.testing.assert_array_equal(resumed.descriptors, cache.descriptors)
    assert _build(data, backbone, out).meta == resumed.meta  # complete: returned as is


def test_other_settings_or_changed_sources_are_refused(data, backbone, cache, tmp_path) -> None:
    with pytest.raises(CacheError, match="differs in"):
        _build(data, backbone, cache.root, crop_type="full")
    out = tmp_path / "c"
    first, second = as_sources(_sources(data))
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache([first, _Interrupted(second, after=3)], backbone, out,
                            resolution=RES, batch_size=5, enhancement=ENH, shard_items=12)
    (Path(data[0]) / "0.png").rename(Path(data[0]) / "0b.png")
    try:
        with pytest.raises(CacheError, match="sources changed"):
            _build(data, backbone, out)
    finally:
        (Path(data[0]) / "0b.png").rename(Path(data[0]) / "0.png")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        _build(data, backbone, tmp_path / "d", resolution=60)


def test_empty_dataset_stops_the_build(backbone, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match="no frames found"):
        build_feature_cache(tmp_path / "empty", backbone, tmp_path / "c", resolution=RES)


def _read(args):
    cache, indices = args
    return cache.feats(indices).numpy()


def test_readable_from_several_processes(cache) -> None:
    assert len(pickle.dumps(cache)) < 100_000  # memory maps are not shipped along
    cache.feats([0])
    jobs = [(cache, [0, 17, 35]), (FeatureCache.open(cache.root), [35, 1])]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map(_read, jobs)
    np.testing.assert_array_equal(got[0], cache.feats([0, 17, 35]).numpy())
    np.testing.assert_array_equal(got[1], cache.feats([35, 1]).numpy())


_KILLED_BUILD = """
import os, signal, sys
from uwstego.training.backbones import build_backbone
from uwstego.training.data.sources import ImageFolder
from uwstego.training.features import build_feature_cache

class Dying:
    # A real folder whose reading ends in SIGKILL after `after` frames: no cleanup runs.
    def __init__(self, inner, after):
        self.inner, self.after = inner, after
    def frames(self, report):
        for n, frame in enumerate(self.inner.frames(report)):
            if n == self.after:
                os.kill(os.getpid(), signal.SIGKILL)
            yield frame
    def describe(self):
        return self.inner.describe()

folder, weights, out, after = sys.argv[1:]
build_feature_cache([Dying(ImageFolder(folder), int(after))], build_backbone("tiny_vit8", weights),
                    out, resolution=64, batch_size=1, crop_type="full", shard_items=2)
"""


def test_sigkill_during_extraction_resumes_from_the_last_complete_shard(tmp_path) -> None:
    from uwstego.training.backbones import save_random_checkpoint

    folder = tmp_path / "imgs"
    for i in range(7):
        write_image(folder / f"{i}.png", scene(20 + i))
    weights = save_random_checkpoint("tiny_vit8", tmp_path / "w.pth", seed=1)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(folder), str(weights),
                           str(out), "5"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # 2 frames a shard: frames 0-3 made shards 0 and 1, frame 4 was pending when it died.
    assert sorted(p.name for p in out.glob("shard_*.json")) == ["shard_00000.json",
                                                                "shard_00001.json"]
    with pytest.raises(CacheError, match=r"did not finish \(2 shards done\)"):
        FeatureCache.open(out)
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*")}
    backbone = build_backbone("tiny_vit8", weights)
    kw = {"resolution": RES, "batch_size": 1, "crop_type": "full", "shard_items": 2}
    resumed = build_feature_cache(folder, backbone, out, **kw)
    assert {p: (out / p).stat().st_mtime_ns for p in done} == done  # not computed again
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    reference = build_feature_cache(folder, backbone, tmp_path / "whole", **kw)
    assert len(resumed) == 7 and resumed.meta["shards"] == reference.meta["shards"]
    for name in ("shard_00000.npy", "shard_00002.npy", "shard_00003.npy", "descriptors.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "whole" / name))


def test_progress_bar_has_the_frame_total(data, backbone, tmp_path, capsys) -> None:
    from uwstego.training.data.totals import total_frames

    assert total_frames(as_sources(_sources(data))) == 6  # 3 stills + every 2nd of 6 frames
    _build(data, backbone, tmp_path / "c")
    assert "6/6" in capsys.readouterr().err
