"""DINO / DINOv2 ViT backbones: shapes, positional embeddings, registers and weight files."""

from __future__ import annotations

import logging
import pickle

import pytest

pytest.importorskip("torch")

import torch
from torch import nn

from uwstego.training.backbones import (
    BACKBONES,
    LAYOUTS,
    CheckpointError,
    DinoViT,
    ViTConfig,
    build_backbone,
    download_weights,
    save_random_checkpoint,
)

TINY = ("tiny_vit8", "tiny_vit14_reg")


def _tiny(name: str, seed: int = 0) -> DinoViT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(name)


@pytest.mark.parametrize(("name", "size"), [("tiny_vit8", (64, 96)), ("tiny_vit14_reg", (112, 98))])
def test_forward_shape_frozen_eval(name: str, size: tuple[int, int]) -> None:
    model = _tiny(name)
    p = model.patch_size
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, model.embed_dim, size[0] // p, size[1] // p)
    assert not model.training
    assert not any(prm.requires_grad for prm in model.parameters())
    assert torch.isfinite(out).all()


def test_input_not_multiple_of_patch_is_rejected() -> None:
    model = _tiny("tiny_vit8")
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        model(torch.randn(1, 3, 64, 60))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 64, 64))


def test_official_configs_have_the_documented_token_grids() -> None:
    # docs/stego.md §2: 785 tokens (with CLS) for ViT/8 at 224; DINOv2 checkpoints hold 37x37 (518).
    with torch.device("meta"):
        vits8 = DinoViT(BACKBONES["dino_vits8"])
        v2reg = DinoViT(BACKBONES["dinov2_vits14_reg"])
    assert vits8.pos_embed.shape == (1, 785, 384)
    assert v2reg.pos_embed.shape == (1, 1 + 37 * 37, 384)
    assert v2reg.register_tokens.shape == (1, 4, 384)
    assert len(vits8.blocks) == 12 and vits8.blocks[0].attn.num_heads == 6
    assert BACKBONES["dino_vitb8"].embed_dim == 768


@pytest.mark.parametrize("name", TINY)
def test_pos_embed_identity_at_pretrain_size_and_shapes_elsewhere(name: str) -> None:
    model = _tiny(name)
    m = model.config.pretrain_grid
    assert torch.equal(model.interpolate_pos_encoding(m, m), model.pos_embed)
    pos = model.interpolate_pos_encoding(m + 3, m - 2)
    assert pos.shape == (1, 1 + (m + 3) * (m - 2), model.embed_dim)
    assert torch.equal(pos[:, 0], model.pos_embed[:, 0])  # the CLS entry is never resized
    assert not torch.allclose(pos[:, 1:m + 1], model.pos_embed[:, 1:m + 1])


@pytest.mark.parametrize("name", TINY)
def test_constant_pos_grid_stays_constant_when_resized(name: str) -> None:
    model = _tiny(name)
    with torch.no_grad():
        model.pos_embed[:, 1:] = 0.25
    pos = model.interpolate_pos_encoding(5, 11)
    torch.testing.assert_close(pos[:, 1:], torch.full_like(pos[:, 1:], 0.25))


def test_family_specific_interpolation_semantics() -> None:
    v1, v2 = BACKBONES["tiny_vit8"], BACKBONES["tiny_vit14_reg"]
    assert (v1.interpolate_antialias, v1.interpolate_offset) == (False, 0.1)
    assert (v2.interpolate_antialias, v2.interpolate_offset) == (True, 0.0)
    assert not BACKBONES["dinov2_vits14"].interpolate_antialias  # as the official hub builder
    # The offset is real: the same grid resized with and without it differs.
    model = _tiny("tiny_vit8")
    plain = DinoViT(ViTConfig(**{**v1.to_dict(), "family": "dinov2", "num_registers": 1}))
    plain.load_state_dict({**plain.state_dict(), "pos_embed": model.pos_embed.detach()})
    assert not torch.allclose(model.interpolate_pos_encoding(10, 10),
                              plain.interpolate_pos_encoding(10, 10))


@pytest.mark.parametrize("name", TINY)
def test_forward_with_baked_pos_embed_matches(name: str) -> None:
    model = _tiny(name)
    x = torch.randn(1, 3, 2 * model.patch_size * 3, model.patch_size * 5)
    pos = model.interpolate_pos_encoding(6, 5)
    torch.testing.assert_close(model(x, pos_embed=pos), model(x))
    with pytest.raises(ValueError, match="pos_embed has shape"):
        model(x, pos_embed=model.interpolate_pos_encoding(5, 6)[:, :-1])


def test_registers_and_cls_dropped_patches_row_major() -> None:
    model = _tiny("tiny_vit14_reg")
    seen = {}
    model.norm.register_forward_hook(lambda mod, args, out: seen.setdefault("tokens", out))
    out = model(torch.randn(2, 3, 42, 70))
    tokens = seen["tokens"]
    assert tokens.shape == (2, 1 + 4 + 3 * 5, 48)
    expected = tokens[:, 5:].reshape(2, 3, 5, 48).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected)


def test_patch_layout_is_row_major_in_image_space() -> None:
    model = _tiny("tiny_vit8")
    with torch.no_grad():  # blocks become identities: each output depends on its own patch only
        for blk in model.blocks:
            for lin in (blk.attn.proj, blk.mlp.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
    x = torch.randn(1, 3, 32, 48)
    y = x.clone()
    y[:, :, 8:16, 24:32] += 1.0  # patch row 1, column 3
    changed = (model(y) - model(x)).abs().amax(dim=1)[0] > 1e-5
    assert changed.nonzero().tolist() == [[1, 3]]


def test_block_matches_torch_transformer_layer() -> None:
    """Independent check of the pre-norm block against PyTorch's own encoder layer."""
    model = _tiny("tiny_vit8")
    blk = model.blocks[0]
    ref = nn.TransformerEncoderLayer(48, 3, dim_feedforward=192, dropout=0.0, activation="gelu",
                                     layer_norm_eps=1e-6, batch_first=True, norm_first=True)
    ref.load_state_dict({
        "self_attn.in_proj_weight": blk.attn.qkv.weight,
        "self_attn.in_proj_bias": blk.attn.qkv.bias,
        "self_attn.out_proj.weight": blk.attn.proj.weight,
        "self_attn.out_proj.bias": blk.attn.proj.bias,
        "linear1.weight": blk.mlp.fc1.weight, "linear1.bias": blk.mlp.fc1.bias,
        "linear2.weight": blk.mlp.fc2.weight, "linear2.bias": blk.mlp.fc2.bias,
        "norm1.weight": blk.norm1.weight, "norm1.bias": blk.norm1.bias,
        "norm2.weight": blk.norm2.weight, "norm2.bias": blk.norm2.bias,
    })
    x = torch.randn(2, 17, 48)
    torch.testing.assert_close(blk(x), ref.eval()(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip_every_official_layout(tmp_path, name: str, layout: str) -> None:
    path = save_random_checkpoint(name, tmp_path / f"{layout}.pth", seed=3, layout=layout)
    loaded = build_backbone(name, path)
    reference = _tiny(name, seed=3)
    assert loaded.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not _tiny(name, seed=4).state_dict()["pos_embed"].equal(reference.pos_embed)


def test_mismatched_checkpoint_names_keys_and_suggests_backbone(tmp_path) -> None:
    path = save_random_checkpoint("tiny_vit14_reg", tmp_path / "reg.pth")
    with pytest.raises(CheckpointError) as info:
        build_backbone("tiny_vit8", path)
    text = str(info.value)
    assert "unexpected: " in text and "register_tokens" in text
    assert "patch_embed.proj.weight (48, 3, 14, 14) vs (48, 3, 8, 8)" in text
    assert "try backbone tiny_vit14_reg" in text


def test_missing_key_is_named(tmp_path) -> None:
    state = torch.load(save_random_checkpoint("tiny_vit8", tmp_path / "a.pth"), weights_only=True)
    del state["blocks.1.mlp.fc2.bias"]
    torch.save(state, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"missing: blocks\.1\.mlp\.fc2\.bias"):
        build_backbone("tiny_vit8", tmp_path / "b.pth")


def test_truncated_corrupt_and_absent_files(tmp_path) -> None:
    good = save_random_checkpoint("tiny_vit8", tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint" * 10)
    for bad in ("cut.pth", "junk.pth"):
        with pytest.raises(CheckpointError, match="corrupt"):
            build_backbone("tiny_vit8", tmp_path / bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone("tiny_vit8", tmp_path / "absent.pth")


def test_pickled_code_is_refused_with_advice(tmp_path) -> None:
    state = torch.load(save_random_checkpoint("tiny_vit8", tmp_path / "a.pth"), weights_only=True)
    torch.save({"teacher": state, "sampler": pickle.Pickler}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="Re-save just the weights"):
        build_backbone("tiny_vit8", tmp_path / "b.pth")


def test_random_weights_warn_and_bad_names(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        build_backbone("tiny_vit8")
    assert "RANDOM weights" in caplog.text
    with pytest.raises(ValueError, match="unknown backbone 'vit_huge'"):
        build_backbone("vit_huge")
    with pytest.raises(ValueError, match="no official weights"):
        download_weights("tiny_vit8")


def test_config_validation_and_dict_round_trip() -> None:
    cfg = BACKBONES["tiny_vit14_reg"]
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="family"):
        ViTConfig(family="mae", embed_dim=48, depth=1, num_heads=3, patch_size=8)
    with pytest.raises(ValueError, match="not divisible"):
        ViTConfig(family="dino", embed_dim=50, depth=1, num_heads=3, patch_size=8)
    with pytest.raises(ValueError, match="unknown ViTConfig fields"):
        ViTConfig.from_dict({**cfg.to_dict(), "qk_norm": True})
