"""Every rank extracts: a 2-process gloo build of the feature cache and the KNN table equals the
single-process build file for file, resumes shard by shard, and the pipeline logs each step once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from tests.support.media import scene, write_image
from uwstego.training.backbones import build_backbone, save_random_checkpoint
from uwstego.training.data.sources import ImageFolder, ReadReport
from uwstego.training.features import FeatureCache, build_feature_cache
from uwstego.training.knn import compute_knn, compute_knn_ranks, query_blocks
from uwstego.training.pipeline import KNN_FILE, run_training
from uwstego.training.settings import PipelineSettings, TrainSettings

RES = 64
BUILD = {"resolution": RES, "batch_size": 3, "crop_type": "five+full", "shard_items": 12}
FRAMES = 9  # 2 frames a shard: 5 shards, the last one short


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    for i in range(FRAMES):
        write_image(root / "imgs" / f"{i}.png", scene(40 + i, 64, 96))
    return {"root": root, "imgs": root / "imgs",
            "weights": save_random_checkpoint("tiny_vit8", root / "w.pth", seed=2)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _StopAfter:
    """A real folder whose reading fails after ``after`` frames (one rank dies mid-build)."""

    def __init__(self, inner: ImageFolder, after: int) -> None:
        self.inner, self.after = inner, after

    def frames(self, report: ReadReport):
        for n, frame in enumerate(self.inner.frames(report)):
            if n == self.after:
                raise RuntimeError("reading stopped by the test")
            yield frame

    def describe(self):
        return self.inner.describe()


def _worker(rank: int, port: int, data: dict[str, Path], out: Path, stop_rank: int | None
            ) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    try:
        source = ImageFolder(data["imgs"])
        if rank == stop_rank:
            source = _StopAfter(source, 5)  # rank 1 owns shards 1 and 3: shard 1 gets done
        cache = build_feature_cache([source], build_backbone("tiny_vit8", data["weights"]), out,
                                    progress=False, **BUILD)
        knn = compute_knn_ranks(np.array(cache.descriptors), k=7, chunk=8)
        if rank == 0:
            np.save(out.parent / "knn_ddp.npy", knn)
    finally:
        torch.distributed.destroy_process_group()


def _spawn(data: dict[str, Path], out: Path, stop_rank: int | None = None) -> None:
    torch.multiprocessing.spawn(_worker, args=(_free_port(), data, out, stop_rank), nprocs=2,
                                join=True)


@pytest.fixture(scope="module")
def reference(data) -> FeatureCache:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank, so that the same arithmetic runs
    try:
        return build_feature_cache(data["imgs"], build_backbone("tiny_vit8", data["weights"]),
                                   data["root"] / "single", progress=False, **BUILD)
    finally:
        torch.set_num_threads(threads)


def _assert_same_cache(out: Path, reference: FeatureCache) -> None:
    ref = reference.root
    names = sorted(p.name for p in ref.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    assert len([n for n in names if n.endswith(".desc.npy")]) == 5
    for name in names:
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(out / name), np.load(ref / name), err_msg=name)
        elif name != "meta.json":
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    meta, ref_meta = (json.loads((p / "meta.json").read_text()) for p in (out, ref))
    assert meta == ref_meta


def test_two_ranks_build_the_single_process_cache_and_knn(data, reference, tmp_path) -> None:
    out = tmp_path / "cache"
    _spawn(data, out)
    _assert_same_cache(out, reference)
    knn = np.load(tmp_path / "knn_ddp.npy")
    assert len(query_blocks(len(reference), 8)) > 2  # the ranks really shared the rows
    np.testing.assert_array_equal(knn, compute_knn(np.array(reference.descriptors), k=7,
                                                   chunk=8))


def test_a_rank_killed_mid_build_resumes_shard_by_shard(data, reference, tmp_path) -> None:
    out = tmp_path / "cache"
    with pytest.raises(torch.multiprocessing.ProcessRaisedException):  # rank 1 died
        _spawn(data, out, stop_rank=1)
    assert (out / "shard_00001.json").is_file() and not (out / "shard_00003.json").exists()
    kept = (out / "shard_00001.npy").stat().st_mtime_ns
    _spawn(data, out)
    assert (out / "shard_00001.npy").stat().st_mtime_ns == kept
    _assert_same_cache(out, reference)


_KILLED_RUN = """
import json, os, signal, sys
import uwstego.training.data.sources as sources
from uwstego.training.pipeline import run_training
from uwstego.training.settings import PipelineSettings, TrainSettings

real = sources.ImageFolder.frames
def dying(self, report):  # SIGKILL while frame 5 is read: no cleanup code runs
    for n, frame in enumerate(real(self, report)):
        if n == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        yield frame
sources.ImageFolder.frames = dying
run_training([sys.argv[1]], sys.argv[2], PipelineSettings(**json.loads(sys.argv[3])),
             TrainSettings(**json.loads(sys.argv[4])), progress=False)
"""


def test_killed_run_resumes_extraction_and_trains_from_step_0(data, tmp_path, caplog) -> None:
    settings = TrainSettings(steps=3, batch_size=4, clusters=3, code_dim=8, feature_samples=4,
                             num_neighbors=2, log_every=1, checkpoint_every=2,
                             kmeans_samples=500)
    pipeline = PipelineSettings(backbone="tiny_vit8", resolution=RES, crop_type="full", knn_k=4,
                                feature_shard_items=2)
    out = tmp_path / "a"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(data["imgs"]), str(out),
         json.dumps({"backbone": "tiny_vit8", "resolution": RES, "crop_type": "full",
                     "knn_k": 4, "feature_shard_items": 2}), json.dumps(settings.to_dict())],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (cache_dir,) = (out / "features").iterdir()
    done = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("shard_*")}
    assert sorted(n for n in done if n.endswith(".json")) == ["shard_00000.json",
                                                             "shard_00001.json"]
    with caplog.at_level(logging.INFO):
        first = run_training([data["imgs"]], out, pipeline, settings, resume=True,
                             progress=False)
    assert {n: (cache_dir / n).stat().st_mtime_ns for n in done} == done  # not recomputed
    assert "after 2 complete shards" in caplog.text
    assert "no training state yet; training starts at step 0" in caplog.text
    assert caplog.text.count("KNN table") == 1 and "reusing" not in caplog.text
    assert (out / KNN_FILE).is_file() and first.model_path.is_file()
    assert len(FeatureCache.open(cache_dir)) == FRAMES
    # Random weights come from a fixed seed: another run finds the same cache key.
    second = run_training([data["imgs"]], tmp_path / "b", pipeline, settings, progress=False)
    assert (Path(first.model.provenance["feature_cache"]).name
            == Path(second.model.provenance["feature_cache"]).name)
