"""The DINO / DINOv2 Vision Transformer as a frozen dense feature extractor.

Parameter names follow the official checkpoints (``cls_token``, ``pos_embed``,
``register_tokens``, ``patch_embed.proj``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,
norm2,mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``), so their state dicts load without renaming.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uwstego.settings_io import from_dict_strict
from uwstego.training.backbones.block import Block
from uwstego.training.backbones.patch_embed import PatchEmbed

FAMILIES = ("dino", "dinov2")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of one backbone; ``pretrain_size`` fixes the checkpoint's pos-embed grid."""

    family: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float = 4.0
    num_registers: int = 0
    layerscale: bool = False
    pretrain_size: int = 224
    ln_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.embed_dim <= 0 or self.depth <= 0 or self.num_heads <= 0 or self.patch_size <= 0:
            raise ValueError(f"embed_dim, depth, num_heads and patch_size must be positive: {self}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by {self.num_heads} heads")
        if self.num_registers < 0:
            raise ValueError(f"num_registers must be >= 0, got {self.num_registers}")
        if self.pretrain_size % self.patch_size:
            raise ValueError(f"pretrain_size {self.pretrain_size} is not a multiple of the "
                             f"patch size {self.patch_size}")

    @property
    def pretrain_grid(self) -> int:
        return self.pretrain_size // self.patch_size

    # The official hub builders differ here: DINO v1 and plain DINOv2 scale by (n + 0.1) / M
    # without antialiasing; the DINOv2 register models ask for the exact size, antialiased.
    @property
    def interpolate_antialias(self) -> bool:
        return self.family == "dinov2" and self.num_registers > 0

    @property
    def interpolate_offset(self) -> float:
        return 0.0 if self.interpolate_antialias else 0.1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViTConfig:
        return from_dict_strict(cls, data, "ViTConfig fields")


class DinoViT(nn.Module):
    """Patch features of the last block after the final LayerNorm, CLS and registers dropped."""

    def __init__(self, config: ViTConfig, name: str = "custom") -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.patch_size = config.patch_size
        self.embed_dim = c = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.pretrain_grid ** 2, c))
        self.register_tokens = (nn.Parameter(torch.zeros(1, config.num_registers, c))
                                if config.num_registers else None)
        self.blocks = nn.ModuleList(
            Block(c, config.num_heads, config.mlp_ratio, config.layerscale, config.ln_eps)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(c, eps=config.ln_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        # As the official models do, so random-weight runs have realistic activation scales.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.config.num_registers

    def interpolate_pos_encoding(self, h_patches: int, w_patches: int) -> torch.Tensor:
        """Positional embedding ``[1, 1 + h*w, C]`` for a ``h_patches x w_patches`` grid.

        Bicubic resize of the checkpoint grid with the official family-specific details (see
        :attr:`ViTConfig.interpolate_antialias`); the pretrain grid itself is returned unchanged.
        """
        if h_patches <= 0 or w_patches <= 0:
            raise ValueError(f"patch grid must be positive, got {h_patches}x{w_patches}")
        m = self.config.pretrain_grid
        if h_patches == m and w_patches == m:
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = pos[:, 1:].reshape(1, m, m, self.embed_dim).permute(0, 3, 1, 2)
        offset = self.config.interpolate_offset
        if offset:
            # The "+0.1" kludge (facebookresearch/dino#8): the scale factor, not just the output
            # size, enters the sampling positions, so it must be passed as a scale factor.
            kwargs: dict[str, Any] = {"scale_factor": ((h_patches + offset) / m,
                                                       (w_patches + offset) / m)}
        else:
            kwargs = {"size": (h_patches, w_patches)}
        grid = F.interpolate(grid, mode="bicubic", align_corners=False,
                             antialias=self.config.interpolate_antialias, **kwargs)
        if grid.shape[-2:] != (h_patches, w_patches):
            raise RuntimeError(f"pos-embed interpolation gave {tuple(grid.shape[-2:])}, "
                               f"wanted {(h_patches, w_patches)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, h_patches * w_patches, self.embed_dim)
        return torch.cat([pos[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 3, H, W]`` ImageNet-normalised -> ``[B, C, H/p, W/p]``.

        ``pos_embed`` (from :meth:`interpolate_pos_encoding`) is used as given, so an export can
        bake it as a constant instead of tracing the bicubic resize.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch [B, 3, H, W], got {tuple(x.shape)}")
        b, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}; "
                             f"resize or crop to e.g. {max(p, h // p * p)}x{max(p, w // p * p)}")
        hp, wp = h // p, w // p
        if pos_embed is None:
            pos_embed = self.interpolate_pos_encoding(hp, wp)
        elif tuple(pos_embed.shape) != (1, 1 + hp * wp, self.embed_dim):
            raise ValueError(f"pos_embed has shape {tuple(pos_embed.shape)}, expected "
                             f"{(1, 1 + hp * wp, self.embed_dim)} for a {hp}x{wp} patch grid")
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), self.patch_embed(x)], dim=1)
        tokens = tokens + pos_embed
        if self.register_tokens is not None:
            # DINOv2 puts the registers after CLS and gives them no positional embedding.
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(b, -1, -1),
                                tokens[:, 1:]], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        patches = self.norm(tokens)[:, self.num_prefix_tokens:]
        return patches.transpose(1, 2).reshape(b, self.embed_dim, hp, wp)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, patch_size={self.patch_size}, embed_dim={self.embed_dim}"

