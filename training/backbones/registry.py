"""Named backbone configurations and where their official weights live."""

from __future__ import annotations

from uwstego.training.backbones.vit import ViTConfig

_DINO_S = {"family": "dino", "embed_dim": 384, "depth": 12, "num_heads": 6}
_DINO_T = {"family": "dino", "embed_dim": 192, "depth": 12, "num_heads": 3}
_DINO_B = {"family": "dino", "embed_dim": 768, "depth": 12, "num_heads": 12}
_DINOV2_S = {"family": "dinov2", "embed_dim": 384, "depth": 12, "num_heads": 6, "patch_size": 14,
             "layerscale": True, "pretrain_size": 518}

BACKBONES: dict[str, ViTConfig] = {
    "dino_vits8": ViTConfig(**_DINO_S, patch_size=8),
    "dino_vits16": ViTConfig(**_DINO_S, patch_size=16),
    # ViT-Ti: the official family's smallest member; no released DINO weights (pretrain it).
    "dino_vitti8": ViTConfig(**_DINO_T, patch_size=8),
    "dino_vitti16": ViTConfig(**_DINO_T, patch_size=16),
    "dino_vitb8": ViTConfig(**_DINO_B, patch_size=8),
    "dino_vitb16": ViTConfig(**_DINO_B, patch_size=16),
    "dinov2_vits14": ViTConfig(**_DINOV2_S),
    "dinov2_vits14_reg": ViTConfig(**_DINOV2_S, num_registers=4),
    # Same code at toy size, for tests and CI; there are no weights for these.
    "tiny_vit8": ViTConfig(family="dino", embed_dim=48, depth=2, num_heads=3, patch_size=8,
                           pretrain_size=64),
    "tiny_vit14_reg": ViTConfig(family="dinov2", embed_dim=48, depth=2, num_heads=3,
                                patch_size=14, num_registers=4, layerscale=True,
                                pretrain_size=112),
}

_DINO_URL = "https://dl.fbaipublicfiles.com/dino"
_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"

# The teacher backbones the official hub entry points load. For ViT-S/8 this is the 300-epoch
# file that STEGO uses (DINO's hub loads the 800-epoch `dino_deitsmall8_pretrain.pth`; both fit).
OFFICIAL_WEIGHTS: dict[str, str] = {
    "dino_vits8": f"{_DINO_URL}/dino_deitsmall8_300ep_pretrain/dino_deitsmall8_300ep_pretrain.pth",
    "dino_vits16": f"{_DINO_URL}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    "dino_vitb8": f"{_DINO_URL}/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
    "dino_vitb16": f"{_DINO_URL}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    "dinov2_vits14": f"{_DINOV2_URL}/dinov2_vits14/dinov2_vits14_pretrain.pth",
    "dinov2_vits14_reg": f"{_DINOV2_URL}/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
}


def backbone_config(name: str) -> ViTConfig:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None


def matching_backbones(embed_dim: int, patch_size: int, depth: int | None = None,
                       num_registers: int | None = None) -> list[str]:
    """Registered names whose architecture fits what a checkpoint file shows."""
    return [name for name, c in BACKBONES.items()
            if c.embed_dim == embed_dim and c.patch_size == patch_size
            and depth in (None, c.depth) and num_registers in (None, c.num_registers)]
