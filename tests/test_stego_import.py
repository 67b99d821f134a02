"""``uwstego import-stego``: a checkpoint in the official STEGO layout becomes a model and a
bundle whose labels are the official inference's (re-computed here from its formulas)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import types
import typing
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
import torch.nn.functional as F

from uwstego.export.pipeline import export_bundle
from uwstego.export.settings import ExportSettings
from uwstego.image_size import Size
from uwstego.sample_frames import synthetic_frames
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import load_trained_model
from uwstego.training.backbones import DinoViT, backbone_config
from uwstego.training.inference import segment, to_network_input
from uwstego.training.stego_import import (
    DATASET_CLASSES,
    convert_stego_checkpoint,
    identify_backbone,
)
from uwstego.training.stego_import_cli import register
from uwstego.training.stego_import_read import StegoCheckpointError, read_lightning_checkpoint

BACKBONE = "tiny_vit8"  # the test-only DINO configuration: 48-d, patch 8, 2 blocks
DIM, K, N_LINEAR, SIDE = 6, 5, 3, 64


@contextlib.contextmanager
def _fake_omegaconf():
    """Classes under OmegaConf's module names (only while saving), so that the pickle names
    them as a real Lightning checkpoint's hyper-parameters do; OmegaConf is not installed."""
    added = [m for m in ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes",
                         "omegaconf.base", "pytorch_lightning", "pytorch_lightning.utilities",
                         "pytorch_lightning.utilities.parsing") if m not in sys.modules]
    classes = {}
    for module in added:
        sys.modules[module] = types.ModuleType(module)
    try:
        for module, name in (("omegaconf.dictconfig", "DictConfig"),
                             ("omegaconf.nodes", "AnyNode"),
                             ("omegaconf.base", "ContainerMetadata")):
            classes[name] = type(name, (), {"__module__": module})
            setattr(sys.modules[module], name, classes[name])
        module = "pytorch_lightning.utilities.parsing"
        classes["AttributeDict"] = type("AttributeDict", (dict,), {"__module__": module})
        sys.modules[module].AttributeDict = classes["AttributeDict"]
        yield classes
    finally:
        for module in added:
            del sys.modules[module]


def _config(oc: dict[str, type], values: dict[str, object]) -> object:
    meta = oc["ContainerMetadata"]()
    meta.__dict__.update(ref_type=typing.Any, object_type=dict, key_type=typing.Any)
    content = {}
    for key, value in values.items():
        node = oc["AnyNode"]()
        node.__dict__.update(_val=value, _metadata=None, _parent=None)
        content[key] = node
    cfg = oc["DictConfig"]()
    cfg.__dict__.update(_metadata=meta, _parent=None, _content=content)
    return cfg


def official_state(seed: int = 0, nonlinear: bool = True) -> OrderedDict:
    """Random tensors under the key names and shapes of the official Lightning module."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = DinoViT(backbone_config(BACKBONE), name=BACKBONE).state_dict()
    c = vit["cls_token"].shape[-1]

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.3

    state = OrderedDict((f"net.model.{k}", v) for k, v in vit.items())
    state.update({"net.cluster1.0.weight": rand(DIM, c, 1, 1), "net.cluster1.0.bias": rand(DIM)})
    if nonlinear:
        state.update({"net.cluster2.0.weight": rand(c, c, 1, 1), "net.cluster2.0.bias": rand(c),
                      "net.cluster2.2.weight": rand(DIM, c, 1, 1),
                      "net.cluster2.2.bias": rand(DIM)})
    state.update({"train_cluster_probe.clusters": rand(N_LINEAR, DIM),
                  "cluster_probe.clusters": rand(K, DIM),
                  "linear_probe.weight": rand(N_LINEAR, DIM, 1, 1),
                  "linear_probe.bias": rand(N_LINEAR),
                  "decoder.weight": rand(c, DIM, 1, 1), "decoder.bias": rand(c)})
    return state


def save_ckpt(path: Path, state: dict, dataset: str | None = "potsdam",
              hparams: object = None) -> Path:
    cfg = {"dataset_name": dataset, "dino_feat_type": "feat", "dim": DIM,
           "extra_clusters": K - N_LINEAR, "model_type": "vit_small"}
    with _fake_omegaconf() as oc:
        data = {"epoch": 3, "global_step": 400, "pytorch-lightning_version": "1.4.9",
                "state_dict": state,
                "hyper_parameters": hparams if hparams is not None else
                oc["AttributeDict"](n_classes=N_LINEAR, cfg=_config(oc, cfg))}
        torch.save(data, path)
    return path


def official_labels(state: dict, frames: list[np.ndarray], probe: str) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """The official inference from its formulas: DINO tokens (CLS dropped) -> cluster1 +
    cluster2 -> code upsampled bilinearly to the image -> cosine to the normalised cluster
    probe (or the linear probe's logits) -> argmax. Also the winning margin (for ties)."""
    vit = DinoViT(backbone_config(BACKBONE), name=BACKBONE)
    vit.load_state_dict({k[len("net.model."):]: v for k, v in state.items()
                         if k.startswith("net.model.")})
    x = to_network_input([f.astype(np.float32) / 255.0 for f in frames])
    with torch.no_grad():
        feat = vit.eval()(x)
        code = F.conv2d(feat, state["net.cluster1.0.weight"], state["net.cluster1.0.bias"])
        if "net.cluster2.0.weight" in state:
            hidden = F.relu(F.conv2d(feat, state["net.cluster2.0.weight"],
                                     state["net.cluster2.0.bias"]))
            code = code + F.conv2d(hidden, state["net.cluster2.2.weight"],
                                   state["net.cluster2.2.bias"])
        code = F.interpolate(code, x.shape[-2:], mode="bilinear", align_corners=False)
        if probe == "cluster":
            scores = torch.einsum("bchw,nc->bnhw", F.normalize(code, dim=1),
                                  F.normalize(state["cluster_probe.clusters"], dim=1))
        else:
            scores = F.conv2d(code, state["linear_probe.weight"], state["linear_probe.bias"])
    top2 = scores.topk(2, dim=1).values
    return scores.argmax(1).numpy(), (top2[:, 0] - top2[:, 1]).numpy()


def _frames(n: int = 2) -> list[np.ndarray]:
    return list(synthetic_frames(Size(SIDE, SIDE), n, 7))


def _assert_same_labels(got: np.ndarray, want: np.ndarray, margin: np.ndarray,
                        classes: int) -> None:
    differ = got != want
    # Only exact ties (float rounding) may differ; with random tensors there are almost none.
    assert not (differ & (margin > 1e-4)).any(), f"{differ.sum()} of {differ.size} differ"
    assert differ.mean() < 1e-3
    present = len(np.unique(want))
    print(f"\n{(~differ).mean():.5%} of {differ.size} px agree, {present} of {classes} "
          "classes present")
    assert present >= 2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tuple[Path, dict]:
    state = official_state()
    return save_ckpt(tmp_path_factory.mktemp("stego") / "potsdam_test.ckpt", state), state


@pytest.mark.parametrize("probe", ["cluster", "linear"])
def test_converted_model_labels_like_the_official_inference(ckpt, probe) -> None:
    path, state = ckpt
    model = convert_stego_checkpoint(path, probe=probe)
    backbone, head = model.build_modules()
    frames = _frames()
    labels, _ = segment(backbone, head, model.centroids,
                        to_network_input([f.astype(np.float32) / 255.0 for f in frames]))
    want, margin = official_labels(state, frames, probe)
    _assert_same_labels(labels.numpy(), want, margin, model.num_clusters)
    if probe == "cluster":
        assert [c.name for c in model.classes] == [f"cluster_{i}" for i in range(K)]
    else:  # the hyper-parameters say potsdam
        assert [c.name for c in model.classes] == list(DATASET_CLASSES["potsdam"])
    assert model.provenance["hyper_parameters"]["cfg"]["dataset_name"] == "potsdam"
    assert model.enhancement.to_dict()["gray_world"] is False  # STEGO saw raw images


def test_cli_then_export_gives_the_official_labels_on_the_vehicle(ckpt, tmp_path) -> None:
    path, state = ckpt
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["import-stego", str(path), "--out", str(tmp_path / "model.pt"),
                              "--resolution", str(SIDE)])
    assert args.func(args) == 0
    model = load_trained_model(tmp_path / "model.pt")
    assert model.backbone == BACKBONE and model.num_clusters == K
    settings = ExportSettings(camera=Size(SIDE, SIDE), network=Size(SIDE, SIDE), frames=2,
                              engine="skip")
    bundle = export_bundle(tmp_path / "model.pt", tmp_path / "bundle", settings)
    seg = Segmenter(bundle.path, backend="onnxruntime")
    frames = _frames(3)
    got = np.stack([seg.segment(f).labels for f in frames])
    seg.close()
    want, margin = official_labels(state, frames, "cluster")
    _assert_same_labels(got.astype(np.int64), want, margin, K)


def test_linear_head_names_file_and_dataset_choice(tmp_path) -> None:
    state = official_state(seed=1, nonlinear=False)
    path = save_ckpt(tmp_path / "c.ckpt", state, dataset=None)
    names = tmp_path / "names.txt"
    names.write_text("sand\nrock\nweed\nfish\nwater\n")
    model = convert_stego_checkpoint(path, names=names)
    assert [c.name for c in model.classes] == ["sand", "rock", "weed", "fish", "water"]
    frames = _frames(1)
    backbone, head = model.build_modules()
    labels, _ = segment(backbone, head, model.centroids,
                        to_network_input([f.astype(np.float32) / 255.0 for f in frames]))
    want, margin = official_labels(state, frames, "cluster")
    _assert_same_labels(labels.numpy(), want, margin, K)
    # 3 linear classes and no dataset recorded: only Potsdam has 3.
    linear = convert_stego_checkpoint(path, probe="linear")
    assert linear.classes[0].name == "roads and cars"
    with pytest.raises(StegoCheckpointError, match="cocostuff27 has 27"):
        convert_stego_checkpoint(path, probe="linear", dataset="cocostuff27")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("cluster_probe.clusters"), "'cluster_probe.clusters' is missing"),
    (lambda s: s.update({"net.cluster1.0.weight": torch.zeros(DIM, 47, 1, 1)}),
     r"'net.cluster1.0.weight' has shape \(6, 47, 1, 1\), expected \?x48x1x1"),
    (lambda s: s.pop("net.model.blocks.1.mlp.fc2.bias"),
     "'net.model.blocks.1.mlp.fc2.bias' is missing"),
    (lambda s: s.update({"net.model.pos_embed": torch.zeros(1, 50, 48)}),
     r"'net.model.pos_embed' has shape \(1, 50, 48\), expected 1x65x48"),
    (lambda s: s.update({"cluster_probe.clusters": torch.zeros(K, DIM + 1)}),
     "'cluster_probe.clusters' has shape"),
])
def test_missing_or_misshaped_keys_are_named(tmp_path, edit, message) -> None:
    state = official_state()
    edit(state)
    with pytest.raises(StegoCheckpointError, match=message):
        convert_stego_checkpoint(save_ckpt(tmp_path / "bad.ckpt", state))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_pickled_code_is_refused_and_other_files_too(tmp_path, caplog) -> None:
    path = save_ckpt(tmp_path / "evil.ckpt", official_state(),
                     hparams={"n_classes": 3, "cfg": _Evil()})
    with pytest.raises(StegoCheckpointError, match=r"refusing to load it.*system"):
        read_lightning_checkpoint(path)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(StegoCheckpointError, match="not a readable PyTorch checkpoint"):
        read_lightning_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"model": {}}, tmp_path / "other.ckpt")
    with pytest.raises(StegoCheckpointError, match="no 'state_dict'"):
        read_lightning_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(StegoCheckpointError, match="does not exist"):
        read_lightning_checkpoint(tmp_path / "absent.ckpt")
    state = official_state()
    state["net.model.patch_embed.proj.weight"] = torch.zeros(100, 3, 8, 8)
    with pytest.raises(StegoCheckpointError, match="none of DINO ViT-S/8"):
        identify_backbone(state, tmp_path / "x.ckpt")
    # Plain tensors and no hyper-parameters: converted from the shapes, with a warning.
    torch.save({"state_dict": official_state()}, tmp_path / "plain.ckpt")
    with caplog.at_level(logging.WARNING):
        assert convert_stego_checkpoint(tmp_path / "plain.ckpt").num_clusters == K
    assert "assuming the last block's tokens" in caplog.text


def test_official_shapes_identify_the_four_dino_backbones(tmp_path) -> None:
    for name in ("dino_vits8", "dino_vits16", "dino_vitb8", "dino_vitb16"):
        config = backbone_config(name)
        state = {"net.model.patch_embed.proj.weight":
                 torch.zeros(config.embed_dim, 3, config.patch_size, config.patch_size),
                 **{f"net.model.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)}}
        assert identify_backbone(state, tmp_path / "c.ckpt") == name
