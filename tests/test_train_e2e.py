"""End to end on a tiny synthetic dive: cache -> KNN -> head -> clusters -> model file.

Also: a run killed mid-way resumes to the uninterrupted result, and a 2-process gloo DDP run
through the ``train`` command produces the same kind of output.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

import torch
import torch.nn.functional as F

from uwstego.scoring import unsupervised_scores
from uwstego.training.artifact import load_trained_model
from uwstego.training.backbones import build_backbone, save_random_checkpoint
from uwstego.training.clusters import spherical_kmeans
from uwstego.training.features import FeatureCache
from uwstego.training.head import SegmentationHead
from uwstego.training.inference import assign
from uwstego.training.pipeline import KNN_FILE, run_training
from uwstego.training.settings import PipelineSettings, TrainSettings
from uwstego.training.synth.classes import CLASSES
from uwstego.training.synth.sequence import generate_dive
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.train import train_head
from uwstego.training.train_log import LOG_FILE
from uwstego.training.train_state import STATE_FILE

pytestmark = pytest.mark.slow

FRAMES, WIDTH, HEIGHT, RES = 24, 96, 64, 64
SETTINGS = TrainSettings(steps=40, batch_size=6, clusters=4, code_dim=16, feature_samples=5,
                         num_neighbors=3, log_every=1, histogram_every=10, checkpoint_every=10,
                         kmeans_samples=3000)
KILL_AT = 24  # the step during which the run is killed; its last checkpoint is step 20


@pytest.fixture(scope="module")
def dive(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dive")
    images = root / "images"
    images.mkdir()
    labels = []
    # Short segments: water colour and light change every 6 frames, so the frames fall into
    # groups that KNN can find and random pairs mostly straddle.
    for f in generate_dive(DiveSettings(seed=3, frames=FRAMES, width=WIDTH, height=HEIGHT,
                                        segment_frames=6)):
        cv2.imwrite(str(images / f"{f.index:03d}.png"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        labels.append(f.labels)
    weights = save_random_checkpoint("tiny_vit8", root / "tiny_vit8.pth", seed=0)
    pipeline = PipelineSettings(backbone="tiny_vit8", weights=weights, resolution=RES,
                                crop_type="full", knn_k=8, feature_batch_size=8)
    return {"root": root, "images": images, "labels": labels, "pipeline": pipeline}


@pytest.fixture(scope="module")
def trained(dive):
    out = dive["root"] / "run"
    result = run_training([dive["images"]], out, dive["pipeline"], SETTINGS, progress=False)
    cache = FeatureCache.open(result.model.provenance["feature_cache"])
    return {"out": out, "result": result, "cache": cache,
            "knn": np.load(out / KNN_FILE)["indices"]}


def _log(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _codes(head: SegmentationHead, cache: FeatureCache) -> torch.Tensor:
    head.eval()
    with torch.no_grad():
        return F.normalize(head(cache.feats(list(range(len(cache))))), dim=1).flatten(2)


def _pair_similarity(z: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """Mean code cosine over all pixel pairs of the given image pairs."""
    return float(torch.stack([(z[i].T @ z[j]).mean() for i, j in pairs]).mean())


def _center_crop_labels(labels: np.ndarray) -> np.ndarray:
    left = (WIDTH - RES) // 2  # "full" crop: the short side is already RES, so only a crop
    return labels[:, left:left + RES]


def test_training_learns_the_structure(dive, trained):
    result, cache, knn = trained["result"], trained["cache"], trained["knn"]
    model = load_trained_model(result.model_path)
    assert model.num_clusters == SETTINGS.clusters and model.resolution == RES
    assert np.allclose(np.linalg.norm(model.centroids, axis=1), 1.0, atol=1e-5)
    assert [c.name for c in model.classes] == [f"cluster_{i}" for i in range(4)]

    rows = _log(result.log_path)
    assert [int(r["step"]) for r in rows] == list(range(1, SETTINGS.steps + 1))
    first = np.mean([r["loss"] for r in rows[:8]])
    last = np.mean([r["loss"] for r in rows[-8:]])
    assert last < first, f"total loss did not fall: {first:.4f} -> {last:.4f}"
    assert any((trained["out"] / "tensorboard").iterdir())

    _, head = model.build_modules()
    z = _codes(head, cache)
    n = len(cache)
    self_sim = _pair_similarity(z, [(i, i) for i in range(n)])
    knn_sim = _pair_similarity(z, [(i, int(j)) for i in range(n)
                                   for j in knn[i, 1:SETTINGS.num_neighbors + 1]])
    rand_sim = _pair_similarity(z, [(i, j) for i in range(n) for j in range(n) if i != j])
    print(f"\ncode cosine: self {self_sim:.3f}, knn {knn_sim:.3f}, random {rand_sim:.3f}")
    assert self_sim > rand_sim and knn_sim > rand_sim

    # Report (not assert) how well the clusters match the synthetic labels.
    labels = np.stack([_center_crop_labels(t) for t in dive["labels"]])
    feats = cache.feats(list(range(n)))
    raw = spherical_kmeans(feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]),
                           SETTINGS.clusters, seed=0)
    scores = {}
    for name, code, cent in (("learned k-means", head(feats), model.centroids),
                             ("online probe", head(feats), result.probe_centroids),
                             ("k-means on raw features", feats, raw)):
        preds, _ = assign(code.detach(), cent, (RES, RES))
        scores[name] = unsupervised_scores(preds.numpy(), labels, len(CLASSES))
    print("mIoU / accuracy on the dive frames: " + "; ".join(
        f"{k} {s.miou:.1f} / {s.accuracy:.1f}" for k, s in scores.items()))


def test_resume_after_kill_reproduces_the_uninterrupted_run(dive, trained, tmp_path):
    out = tmp_path / "killed"
    cache_dir = trained["result"].model.provenance["feature_cache"]
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        import uwstego.training.step as ts
        import uwstego.training.train as tt
        from uwstego.training.backbones import build_backbone
        from uwstego.training.features import FeatureCache
        from uwstego.training.settings import TrainSettings

        real_step, calls = ts.train_step, [0]
        def dying_step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == {KILL_AT}:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(*args, **kwargs)
        ts.train_step = dying_step
        tt.train_head(FeatureCache.open({cache_dir!r}),
                      np.load({str(trained["out"] / KNN_FILE)!r})["indices"],
                      TrainSettings(**{json.dumps(SETTINGS.to_dict())}), {str(out)!r},
                      backbone=build_backbone("tiny_vit8", {str(dive["pipeline"].weights)!r}),
                      progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["step"] == 20
    assert int(_log(out / LOG_FILE)[-1]["step"]) == KILL_AT - 1
    assert not (out / "model.pt").exists()

    backbone = build_backbone("tiny_vit8", dive["pipeline"].weights)
    with pytest.raises(ValueError, match="--resume"):
        train_head(trained["cache"], trained["knn"], SETTINGS, out, backbone=backbone,
                   progress=False)
    resumed = train_head(trained["cache"], trained["knn"], SETTINGS, out, resume=True,
                         backbone=backbone, progress=False)
    reference = trained["result"].model
    for key, value in reference.head_state.items():
        torch.testing.assert_close(resumed.model.head_state[key], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.probe_centroids, trained["result"].probe_centroids,
                               atol=1e-5)
    steps = [int(r["step"]) for r in _log(out / LOG_FILE)]
    assert steps == list(range(1, SETTINGS.steps + 1))  # the lost steps 21-23 logged once

    with pytest.raises(ValueError, match="batch_size"):
        train_head(trained["cache"], trained["knn"],
                   TrainSettings(**{**SETTINGS.to_dict(), "batch_size": 4}), out, resume=True,
                   backbone=backbone, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, argv: list[str]) -> None:
    import argparse

    from uwstego.training.cli import register_train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    register_train(parser.add_subparsers())
    args = parser.parse_args(argv)
    assert args.func(args) == 0


def test_two_process_gloo_ddp_run(dive, tmp_path):
    out = tmp_path / "ddp"
    p, s = dive["pipeline"], SETTINGS
    argv = ["train", str(dive["images"]), "--out", str(out), "--backbone", p.backbone,
            "--weights", str(p.weights), "--resolution", str(RES), "--crop-type", "full",
            "--clusters", str(s.clusters), "--code-dim", str(s.code_dim), "--steps", "12",
            "--batch-size", "4", "--checkpoint-every", "6", "--log-every", "1"]
    torch.multiprocessing.spawn(_ddp_worker, args=(_free_port(), argv), nprocs=2, join=True)
    model = load_trained_model(out / "model.pt")
    assert model.num_clusters == s.clusters and model.provenance["processes"] == 2
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["step"] == 12 and state["world_size"] == 2
    # Each rank keeps its own random stream (dropout masks, sample points, positives).
    assert not torch.equal(state["rng"][0]["generator"], state["rng"][1]["generator"])
    assert [int(r["step"]) for r in _log(out / LOG_FILE)] == list(range(1, 13))


def test_novelty_calibration_fits_the_graphs_cosine_on_training_pixels(trained):
    from uwstego.novelty import novelty_map, unknown_mask
    from uwstego.training.calibration import graph_confidences

    result, cache = trained["result"], trained["cache"]
    model = load_trained_model(result.model_path)
    cal = model.calibration
    assert cal is not None and cal.quantile == SETTINGS.novelty_quantile
    assert sum(cal.counts) > 0 and cal.num_clusters == SETTINGS.clusters
    _, head = model.build_modules()
    # Other pixels of the same images (another seed): about the quantile's share is unknown.
    cos, clusters = graph_confidences(head, cache, model.centroids, "cpu", 20_000, seed=7,
                                      upsample=8)
    rate = float(unknown_mask(cos, clusters, cal).mean())
    assert 0.0 < rate < 5 * cal.quantile, rate
    nov = novelty_map(cos, clusters, cal)
    assert nov.min() >= 0.0 and nov.max() <= 1.0
    assert 0.4 < float((nov == 0).mean()) < 0.6  # at or above the cluster's median
