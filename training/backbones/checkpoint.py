"""Reading the official DINO / DINOv2 weight files, and writing random ones in the same layout.

Accepted layouts (all reduce to the hub state dict of :class:`DinoViT`):

- the released backbone files: a plain state dict (DINOv2's carries an unused ``mask_token``);
- DINO training checkpoints: ``{"teacher": {"backbone.*", "head.*"}, "student":
  {"module.backbone.*", ...}, "args": Namespace, ...}`` (the teacher is preferred, as in STEGO);
- DINOv2 training checkpoints: ``{"model": {"teacher.backbone.*", "student.backbone.*", ...}}``
  or ``{"teacher": {"backbone.*", "dino_head.*"}}``, possibly with chunked blocks
  (``blocks.{chunk}.{i}.*``);
- any of ``model`` / ``state_dict`` wrappers and ``module.`` (DDP) / ``_orig_mod.``
  (torch.compile) prefixes.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from uwstego.atomic import atomic_path
from uwstego.errors import UwstegoError
from uwstego.training.backbones.registry import backbone_config, matching_backbones
from uwstego.training.backbones.vit import DinoViT

logger = logging.getLogger(__name__)

# Teacher first: its weights are the EMA the DINO papers evaluate and STEGO loads.
_CONTAINER_KEYS = ("teacher", "student", "model", "state_dict")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SCOPE_PREFIXES = ("teacher.", "backbone.")
_IGNORED_KEYS = frozenset({"mask_token"})  # DINOv2's iBOT mask embedding; unused at inference
_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")
LAYOUTS = ("hub", "dino_train", "dinov2_train", "state_dict")


class CheckpointError(UwstegoError, ValueError):
    """A weight file that cannot be read or does not fit the backbone."""


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` with pickled code refused (the DINO ``args`` Namespace is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors, which are not loaded for "
                f"safety. Re-save just the weights, e.g. torch.save(ckpt['teacher'], 'w.pth'). "
                f"Detail: {str(exc).splitlines()[0]}") from exc
        raise _unreadable(path, exc) from exc
    except Exception as exc:  # torch.load fails in many ways on damaged bytes
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path}: cannot be read; the file is truncated or corrupt or not a PyTorch checkpoint "
        f"({path.stat().st_size} bytes; re-download it). Detail: {type(exc).__name__}: {exc}")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{source}: expected a state dict, found {type(obj).__name__}")
        key = next((k for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            raise CheckpointError(
                f"{source}: no state dict inside; top-level keys {sorted(map(str, obj))[:12]}, "
                f"expected tensors or one of {list(_CONTAINER_KEYS)}")
        obj = obj[key]
    return dict(obj)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    while True:
        before = set(state)
        for prefix in _WRAPPER_PREFIXES:
            state = {k.removeprefix(prefix): v for k, v in state.items()}
        for scope in _SCOPE_PREFIXES:
            if any(k.startswith(scope) for k in state):
                # Keep the backbone only: DINO/iBOT projection heads share the file.
                state = {k[len(scope):]: v for k, v in state.items() if k.startswith(scope)}
                break
        if set(state) == before:
            return state


def normalise_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Any accepted layout -> the flat :class:`DinoViT` key layout."""
    state = _strip_prefixes(_unwrap(obj, source))
    state = {_CHUNKED_BLOCK.sub(r"blocks.\1.", k): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in _IGNORED_KEYS}


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """What architecture a state dict looks like, and which registered backbones fit it."""
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 4:
        return "it has no patch_embed.proj.weight, so it is not a DINO ViT backbone"
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else None
    regs = state.get("register_tokens")
    num_registers = int(regs.shape[1]) if regs is not None else 0
    names = matching_backbones(embed_dim, patch, depth, num_registers)
    text = (f"it looks like embed dim {embed_dim}, patch {patch}, depth {depth}, "
            f"{num_registers} registers")
    return text + (f": try backbone {' or '.join(names)}" if names else
                   ": no registered backbone has this architecture")


def _shorten(items: list[str], limit: int = 8) -> str:
    extra = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + extra


def load_weights(model: DinoViT, path: str | Path) -> DinoViT:
    """Load an official weight file into ``model`` strictly, with an error naming every misfit."""
    state = normalise_state_dict(read_checkpoint(path), str(path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
                    for k, v in expected.items() if k in state and state[k].shape != v.shape)
    if missing or unexpected or shapes:
        problems = [f"{label}: {_shorten(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected),
                     ("shape mismatch (file vs model)", shapes)) if items]
        raise CheckpointError(f"{path} does not fit backbone {model.name!r}; "
                              + "; ".join(problems) + f". {describe_state_dict(state)}")
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s weights from %s", model.name, path)
    return model


def _layout(name: str, state: dict[str, torch.Tensor], layout: str, seed: int) -> Any:
    patch = backbone_config(name).patch_size
    dim = next(iter(state.values())).shape[-1]
    fake_head = {"mlp.0.weight": torch.zeros(8, dim), "last_layer.weight_g": torch.ones(4, 1)}
    if layout == "hub":
        return state
    if layout == "state_dict":
        return {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 1}
    if layout == "dino_train":
        net = {**{f"backbone.{k}": v for k, v in state.items()},
               **{f"head.{k}": v for k, v in fake_head.items()}}
        return {"student": {f"module.{k}": v.clone() for k, v in net.items()}, "teacher": net,
                "optimizer": {}, "epoch": 1, "dino_loss": {"center": torch.zeros(1, 8)},
                "args": argparse.Namespace(arch=name, patch_size=patch, seed=seed)}
    if layout == "dinov2_train":
        chunked = {re.sub(r"^blocks\.(\d+)\.", r"blocks.\1.\1.", k): v for k, v in state.items()}
        model = {}
        for role in ("student", "teacher"):
            model.update({f"{role}.backbone.{k}": v.clone() for k, v in chunked.items()})
            model.update({f"{role}.dino_head.{k}": v for k, v in fake_head.items()})
        return {"model": model, "iteration": 10}
    raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")


def save_random_checkpoint(name: str, path: str | Path, seed: int = 0,
                           layout: str = "hub") -> Path:
    """Random weights for backbone ``name`` in an official file layout (see :data:`LAYOUTS`).

    ``hub`` is the released backbone file; the others mimic DINO / DINOv2 training checkpoints
    and a generic DDP ``state_dict`` wrapper, so tests exercise the real loader.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    config = backbone_config(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = {k: v.detach().clone() for k, v in DinoViT(config, name).state_dict().items()}
    if config.family == "dinov2":
        state["mask_token"] = torch.zeros(1, config.embed_dim)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(_layout(name, state, layout, seed), tmp)
    return path
