"""Reading a STEGO PyTorch Lightning checkpoint without running code from the file.

A Lightning ``.ckpt`` is one ``torch.save`` of ``{"state_dict": tensors, "hyper_parameters":
{"n_classes": int, "cfg": <OmegaConf DictConfig>}, "epoch", "global_step", ...}``. The tensors
load with ``torch.load(weights_only=True)``; the hyper-parameters are pickled OmegaConf (and
sometimes Lightning) objects, which that refuses. Here every such class is replaced by an inert
stand-in that only records what the pickle hands it (constructor arguments, state, items), so
no code named by the file ever runs; the recorded OmegaConf tree is then read as plain values.
Only names from configuration libraries are stood in for; a file that names anything else
(``os.system``, ``builtins.eval``, an unknown class) is refused with the names listed.

Reading is bounded (docs/stego.md §11): the archive's records are
checked before any is read (``torch.save`` stores them uncompressed, so a compressed record, which
could declare gigabytes, is refused, and together they cannot be larger than the file), and the
hyper-parameters become plain values under a node count and depth limit (a pickle can share one
list between many places, so a few kilobytes can describe 2^80 nodes).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uwstego.errors import UwstegoError

log = logging.getLogger(__name__)

# A STEGO configuration has a few dozen values; these are far above any real one.
MAX_HPARAM_VALUES = 100_000
MAX_HPARAM_DEPTH = 64

# Modules whose classes appear in the hyper-parameters of Lightning checkpoints. Their classes
# are never imported or called: the inert stand-in takes their place.
_CONFIG_MODULES = ("omegaconf", "typing", "pytorch_lightning", "lightning", "lightning_fabric",
                   "collections", "enum", "copyreg", "pathlib")
# Lightning's dict subclass for hyper-parameters: read as the plain dict it is (the unpickler
# fills only exact dicts with items).
_DICT_CLASSES = frozenset({"pytorch_lightning.utilities.parsing.AttributeDict",
                           "lightning.pytorch.utilities.parsing.AttributeDict",
                           "lightning_fabric.utilities.data.AttributeDict",
                           "lightning.fabric.utilities.data.AttributeDict"})
# Plain builtin types referenced by OmegaConf metadata (element and key types).
_BUILTIN_TYPES = frozenset({"builtins.dict", "builtins.list", "builtins.tuple", "builtins.set",
                            "builtins.str", "builtins.int", "builtins.float", "builtins.bool",
                            "builtins.bytes", "builtins.object", "builtins.NoneType"})


class StegoCheckpointError(UwstegoError, ValueError):
    """A file that is not a readable STEGO checkpoint, or one that is not loaded for safety."""


class _Inert:
    """Stands in for a pickled class: records arguments, state and items, runs nothing."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        inst = super().__new__(cls)
        inst.__dict__.update(args=args, state=None, items={}, elements=[])
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["elements"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["elements"].extend(values)


def _stand_in(name: str) -> type:
    if name in _DICT_CLASSES:
        return dict
    return type(name.rsplit(".", 1)[-1], (_Inert,), {"global_name": name})


def _allowed(name: str) -> bool:
    return name in _BUILTIN_TYPES or name.split(".", 1)[0] in _CONFIG_MODULES


class _TooLarge(Exception):
    pass


def plain(obj: Any, max_values: int = MAX_HPARAM_VALUES, max_depth: int = MAX_HPARAM_DEPTH
          ) -> Any:
    """The recorded objects as plain values: OmegaConf nodes give their content or value.

    Raises ValueError past ``max_values`` values or ``max_depth`` levels, counting every place a
    shared object appears (the plain tree has no sharing)."""
    left = [max_values]

    def walk(obj: Any, depth: int) -> Any:
        left[0] -= 1
        if left[0] < 0 or depth > max_depth:
            raise _TooLarge
        if isinstance(obj, type) and issubclass(obj, _Inert):
            return obj.global_name
        if isinstance(obj, _Inert):
            state = obj.state[0] if isinstance(obj.state, tuple) and obj.state else obj.state
            if obj.items:
                return {str(k): walk(v, depth + 1) for k, v in obj.items.items()}
            if obj.elements:
                return [walk(v, depth + 1) for v in obj.elements]
            if isinstance(state, Mapping):
                for key in ("_content", "_val"):  # DictConfig / ListConfig content, node value
                    if key in state:
                        return walk(state[key], depth + 1)
                return {str(k): walk(v, depth + 1) for k, v in state.items()
                        if not str(k).startswith("_")}
            return walk(obj.args[0], depth + 1) if len(obj.args) == 1 \
                else type(obj).global_name
        if isinstance(obj, Mapping):
            return {str(k): walk(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [walk(v, depth + 1) for v in obj]
        if isinstance(obj, (str, int, float, bool)) or obj is None:
            return obj
        return repr(obj)[:80]

    try:
        return walk(obj, 0)
    except _TooLarge:
        raise ValueError(f"hyper-parameters with more than {max_values} values or deeper than "
                         f"{max_depth} levels: not a STEGO configuration") from None


def _check_archive(path: Path) -> None:
    """Refuse, before torch reads a record, an archive whose records could exhaust memory."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise StegoCheckpointError(f"{path}: not a readable PyTorch checkpoint (not the zip "
                                   f"format torch.save writes since 1.6: {exc})") from exc
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise StegoCheckpointError(
                f"{path}: record {record.filename!r} is compressed and declares "
                f"{record.file_size} bytes; torch.save stores records uncompressed: refused")
    declared = sum(r.file_size for r in records)
    if declared > size:
        raise StegoCheckpointError(f"{path}: its records declare {declared} bytes, more than "
                                   f"the file's {size}: damaged or crafted, refused")


@dataclass(frozen=True)
class LightningCheckpoint:
    """The tensors of a checkpoint and, where they could be read, its hyper-parameters."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    stood_in: tuple[str, ...] = ()

    def find(self, key: str) -> Any:
        """The first value named ``key`` anywhere in the hyper-parameters, else ``None``."""
        todo: list[Any] = [self.hyper_parameters]
        while todo:
            item = todo.pop(0)
            if isinstance(item, Mapping):
                if key in item:
                    return item[key]
                todo += list(item.values())
        return None


def _load(path: Path, stand_ins: list[tuple[type, str]]) -> Any:
    with torch.serialization.safe_globals(stand_ins):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_lightning_checkpoint(path: str | Path) -> LightningCheckpoint:
    """Tensors and hyper-parameters of ``path``; refuses (naming them) what it does not load."""
    path = Path(path)
    if not path.is_file():
        raise StegoCheckpointError(f"checkpoint {path} does not exist")
    _check_archive(path)
    try:
        unsafe = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except AttributeError:  # torch < 2.5 cannot list them: load plain tensors only
        unsafe = []
    except (RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError,
            ValueError) as exc:
        raise StegoCheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated, "
                                   f"corrupt, or another format): {exc}") from exc
    refused = [name for name in unsafe if not _allowed(name)]
    if refused:
        raise StegoCheckpointError(
            f"{path}: refusing to load it, the file names code outside tensors and "
            f"configuration objects ({', '.join(refused[:6])}); only load it if you trust it, "
            "and re-save just the weights: torch.save({'state_dict': ckpt['state_dict']}, ...)")
    try:
        data = _load(path, [(_stand_in(name), name) for name in unsafe])
    except (pickle.UnpicklingError, TypeError, AttributeError) as exc:
        raise StegoCheckpointError(f"{path}: its hyper-parameters cannot be read safely "
                                   f"({str(exc).splitlines()[0]}); re-save just the weights: "
                                   "torch.save({'state_dict': ckpt['state_dict']}, ...)") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise StegoCheckpointError(f"{path}: not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("state_dict"), Mapping):
        top = sorted(map(str, data))[:10] if isinstance(data, Mapping) else type(data).__name__
        raise StegoCheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict'; "
                                   f"found {top})")
    state = {str(k): v for k, v in data["state_dict"].items() if isinstance(v, torch.Tensor)}
    try:
        hparams = plain(data.get("hyper_parameters") or {})
    except ValueError as exc:
        raise StegoCheckpointError(f"{path}: {exc}; re-save just the weights: "
                                   "torch.save({'state_dict': ckpt['state_dict']}, ...)") from exc
    if unsafe:
        log.info("%s: read its hyper-parameters without running their classes (%s)", path,
                 ", ".join(unsafe[:6]))
    return LightningCheckpoint(path, state, hparams if isinstance(hparams, dict) else {},
                               tuple(unsafe))
