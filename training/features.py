"""The on-disk feature cache: frozen-backbone features computed once, read by every step.

Layout of a cache folder::

    meta.json              what was computed (key, backbone, resolution, crops, enhancement,
                           sources); once finished also the index of all shards and the read
                           report
    shard_00000.npy        float16 [n, C, h, w] patch features, memory-mapped when read
    shard_00000.desc.npy   float32 [n, C] descriptors of the shard's items
    shard_00000.json       provenance of the shard's frames (source, path, frame, host params)
                           and the shard's record; written last, so it marks the shard complete
    descriptors.npy        float32 [N, C]: L2-normalised spatial means (KNN, docs/stego.md §5)

Items are frames x crops in order: item ``i`` of a shard is crop ``i % n_crops`` of frame
``i // n_crops``. Every file is written atomically and a shard counts as done only once its JSON
is in place, so a killed build resumes shard by shard: the sources are re-read (which also
replays the enhancement state), the backbone runs only for the missing shards. Under
torch.distributed the ranks compute disjoint shards (``s % world_size``) and rank 0 writes the
index; the files are those a single process writes. A finished cache is read-only and safe to
open from many processes (DDP ranks, loader workers).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from uwstego.atomic import atomic_path, write_json_atomic
from uwstego.enhance import EnhanceSettings
from uwstego.errors import UwstegoError
from uwstego.training import distributed as ddp
from uwstego.training.backbones import DinoViT
from uwstego.training.data.crops import (
    crop_box,
    crop_names,
    enhance_params,
    make_crops,
    normalise,
    render,
    resize_center_crop,
    to_uint8,
)
from uwstego.training.data.sources import (
    FrameRef,
    ReadReport,
    Source,
    as_sources,
    check_not_empty,
    iter_frames,
    read_frame,
)
from uwstego.training.data.totals import total_frames
from uwstego.training.settings import DEFAULT_CROP_TYPE, SHARD_ITEMS

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_ENHANCEMENT = EnhanceSettings()
META = "meta.json"


class CacheError(UwstegoError, ValueError):
    """A cache folder that is incomplete, from other settings, or does not match its sources."""


def weights_fingerprint(backbone: DinoViT) -> str:
    """Hash of the backbone's weights: a cache from random weights never passes for a real one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_key(backbone: DinoViT, resolution: int, crop_type: str,
              enhancement: EnhanceSettings) -> str:
    """Backbone, patch, resolution, crop type, weights and enhancement: all that changes features.

    Usable as a folder name, so caches of different settings can live side by side.
    """
    enh = hashlib.sha256(json.dumps(enhancement.to_dict(), sort_keys=True).encode()).hexdigest()
    return (f"{backbone.name}-p{backbone.patch_size}-r{resolution}-{crop_type}"
            f"-w{weights_fingerprint(backbone)[:8]}-e{enh[:8]}")


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}"


class FeatureCache:
    """Read access to a finished cache folder; see the module text for the layout."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.crops: tuple[str, ...] = tuple(meta["crops"])
        self._shards = [s["name"] for s in meta["shards"]]
        self._starts = list(np.cumsum([0] + [s["items"] for s in meta["shards"]]))
        self._frames = [json.loads((root / f"{name}.json").read_text())["frames"]
                        for name in self._shards]
        self._arrays: list[np.ndarray | None] = [None] * len(self._shards)
        self._descriptors: np.ndarray | None = None

    @classmethod
    def open(cls, root: str | Path) -> FeatureCache:
        root = Path(root)
        try:
            meta = json.loads((root / META).read_text())
        except FileNotFoundError:
            raise CacheError(f"{root} is not a feature cache (no {META})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise CacheError(f"{root}: cache format {meta.get('format')}, this code reads "
                             f"{FORMAT_VERSION}; rebuild it")
        if not meta.get("complete"):
            raise CacheError(f"{root}: the build did not finish ({len(_done_shards(root))} "
                             "shards done); run the build again to resume it")
        return cls(root, meta)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps would be pickled as full copies; each process maps the files itself.
        state = dict(self.__dict__)
        state["_arrays"] = [None] * len(self._shards)
        state["_descriptors"] = None
        return state

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])

    @property
    def enhancement(self) -> EnhanceSettings:
        return EnhanceSettings.from_dict(self.meta["enhancement"])

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta["feature_shape"]
        return int(c), int(h), int(w)

    @property
    def descriptors(self) -> np.ndarray:
        if self._descriptors is None:
            self._descriptors = np.load(self.root / "descriptors.npy", mmap_mode="r")
        return self._descriptors

    def _locate(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} out of range for a cache of {len(self)}")
        index %= len(self)
        shard = bisect.bisect_right(self._starts, index) - 1
        return shard, index - int(self._starts[shard])

    def _array(self, shard: int) -> np.ndarray:
        array = self._arrays[shard]
        if array is None:
            array = np.load(self.root / f"{self._shards[shard]}.npy", mmap_mode="r")
            self._arrays[shard] = array
        return array

    def feats(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features of ``indices`` as float32 ``[B, C, h, w]``."""
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices,
                         dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), *self.feature_shape), dtype=np.float16)
        for row, i in enumerate(idx):
            shard, local = self._locate(int(i))
            out[row] = self._array(shard)[local]
        return torch.from_numpy(out).float()

    def item(self, index: int) -> dict[str, Any]:
        """Provenance of an item: its frame reference, crop name and enhancement params."""
        shard, local = self._locate(index)
        frame = self._frames[shard][local // len(self.crops)]
        ref = FrameRef.from_dict(frame["ref"])
        return {**frame["ref"], "sequence": ref.sequence,
                "crop": self.crops[local % len(self.crops)], "params": frame["params"]}

    def load_crop(self, index: int) -> np.ndarray:
        """The crop the backbone saw for ``index``, re-read from its source: uint8 RGB square."""
        item = self.item(index)
        rgb = read_frame(FrameRef.from_dict({k: item[k] for k in ("kind", "path", "index",
                                                                  "topic", "t_ns") if k in item}))
        img = render(rgb, np.asarray(item["params"], dtype=np.float32), self.enhancement)
        top, bottom, left, right = crop_box(*img.shape[:2], item["crop"])
        return to_uint8(resize_center_crop(img[top:bottom, left:right], self.resolution))

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """``(group, position)`` per item for :func:`uwstego.training.knn.compute_knn`'s exclusion.

        Group: one integer per stream (video, bag topic, still image); position: the frame
        number in it. The crops of one frame share both.
        """
        ids: dict[str, int] = {}
        groups, positions = [], []
        for frames in self._frames:
            for frame in frames:
                ref = FrameRef.from_dict(frame["ref"])
                groups += [ids.setdefault(ref.sequence, len(ids))] * len(self.crops)
                positions += [ref.index] * len(self.crops)
        return np.asarray(groups, dtype=np.int64), np.asarray(positions, dtype=np.int64)


class _ShardWriter:
    """Fills one shard batch by batch and writes its three files, the JSON (the mark) last."""

    def __init__(self, root: Path, index: int, backbone: DinoViT, batch_size: int,
                 device: torch.device) -> None:
        self.root, self.name = root, _shard_name(index)
        self.backbone, self.batch_size, self.device = backbone, batch_size, device
        self.pending: list[np.ndarray] = []
        self.feats: list[np.ndarray] = []
        self.descs: list[np.ndarray] = []

    def add(self, crops: list[np.ndarray]) -> None:
        self.pending += crops
        while len(self.pending) >= self.batch_size:
            self._run(self.pending[:self.batch_size])
            self.pending = self.pending[self.batch_size:]

    def _run(self, crops: list[np.ndarray]) -> None:
        with torch.inference_mode():
            x = torch.from_numpy(normalise(crops)).to(self.device)
            f = self.backbone(x).float()
            desc = F.normalize(f.mean(dim=(2, 3)), dim=1)
        self.feats.append(f.half().cpu().numpy())
        self.descs.append(desc.cpu().numpy())

    def write(self, frames: list[dict[str, Any]]) -> None:
        if self.pending:
            self._run(self.pending)
            self.pending = []
        feats = np.concatenate(self.feats)
        with atomic_path(self.root / f"{self.name}.npy") as tmp:
            np.save(tmp, feats)
        with atomic_path(self.root / f"{self.name}.desc.npy") as tmp:
            np.save(tmp, np.concatenate(self.descs).astype(np.float32))
        record = {"name": self.name, "items": len(feats), "frames": len(frames),
                  "feature_shape": list(feats.shape[1:])}
        write_json_atomic(self.root / f"{self.name}.json", {"shard": record, "frames": frames})


def _done_shards(root: Path) -> dict[int, dict[str, Any]]:
    """Index -> record of every shard whose files are all in place (its JSON is written last)."""
    done = {}
    for path in root.glob("shard_*.json"):
        record = json.loads(path.read_text()).get("shard")
        if record is not None:  # written by the version that kept progress in meta.json
            done[int(path.stem.split("_")[1])] = record
    return done


def _start(root: Path, header: dict[str, Any]) -> dict[str, Any]:
    """A fresh meta, or the one of an interrupted build with exactly the same header.

    A build that was refused or stopped before its first shard (a bag with two cameras, no
    frames found) protects nothing: its meta is replaced, so the corrected command can run.
    """
    meta_path = root / META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        changed = sorted(k for k in header if meta.get(k) != header[k])
        done = len(_done_shards(root))
        if meta.get("format") == FORMAT_VERSION and not changed:
            if done and not meta["complete"]:
                logger.info("resuming feature cache %s after %d complete shards", root, done)
            return meta
        if not done and not meta.get("complete"):
            logger.info("%s: replacing the meta of a build that cached nothing", root)
            for stale in (meta_path, *root.glob(".*")):
                if stale.is_file():
                    stale.unlink()
        else:
            raise CacheError(f"{root} holds a feature cache built with other settings (differs "
                             f"in {changed or ['format']}); delete it or choose another folder")
    if root.exists() and any(root.iterdir()):
        raise CacheError(f"{root} exists and is not a feature cache; choose an empty folder")
    root.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, **header, "shards": [], "complete": False}
    write_json_atomic(meta_path, meta)
    return meta


def _joined(root: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The meta rank 0 prepared, checked against this rank's own settings."""
    meta = json.loads((root / META).read_text())
    changed = sorted(k for k in header if meta.get(k) != header[k])
    if changed:
        raise CacheError(f"{root}: rank {ddp.dist_info().rank} computes other features than "
                         f"rank 0 (differs in {changed}); every rank needs the same backbone "
                         "weights and settings")
    return meta


def _check_same_frames(root: Path, name: str, frames: list[dict[str, Any]]) -> None:
    recorded = json.loads((root / f"{name}.json").read_text())["frames"]
    if [f["ref"] for f in recorded] != [f["ref"] for f in frames]:
        raise CacheError(f"{root}: the sources changed since the interrupted build ({name} held "
                         f"other frames); delete the folder to rebuild")


def _finish(root: Path, meta: dict[str, Any], shards: int, report: ReadReport) -> None:
    """Rank 0, once every shard is written: the descriptors of all items and the index."""
    done = _done_shards(root)
    missing = [i for i in range(shards) if i not in done]
    if missing:
        raise CacheError(f"{root}: shards {missing[:5]} are missing after every rank finished")
    records = [done[i] for i in range(shards)]
    descs = [np.load(root / f"{r['name']}.desc.npy") for r in records]
    with atomic_path(root / "descriptors.npy") as tmp:
        np.save(tmp, np.concatenate(descs))
    meta.update(shards=records, complete=True, items=sum(r["items"] for r in records),
                feature_shape=records[0]["feature_shape"], report=report.to_dict())
    write_json_atomic(root / META, meta)


def build_feature_cache(items: Iterable[Source | str | Path] | Source | str | Path,
                        backbone: DinoViT, out_dir: str | Path, *, resolution: int = 224,
                        batch_size: int = 16, device: str | torch.device = "cpu",
                        enhancement: EnhanceSettings = DEFAULT_ENHANCEMENT,
                        crop_type: str = DEFAULT_CROP_TYPE,
                        shard_items: int = SHARD_ITEMS, progress: bool = True) -> FeatureCache:
    """Run ``backbone`` once over every crop of every frame of ``items`` into ``out_dir``.

    ``items``: sources (:mod:`uwstego.training.data.sources`) or paths. Resumes an interrupted
    build of
    the same settings in ``out_dir`` shard by shard; returns the finished cache at once if it is
    complete. The backbone is moved to ``device``.

    Under torch.distributed every rank calls this alike: shard ``s`` is computed by rank
    ``s % world_size``. Every rank reads all frames (the enhancement's temporal state must see
    them in order) but renders and runs the backbone only for its own shards, so the shards are
    the ones a single process writes. Rank 0 writes the index once all ranks are through.
    """
    info = ddp.dist_info()
    sources = as_sources(items)
    names = crop_names(crop_type)
    if resolution <= 0 or resolution % backbone.patch_size:
        raise ValueError(f"resolution {resolution} must be a positive multiple of the patch "
                         f"size {backbone.patch_size}")
    if batch_size < 1 or shard_items < 1:
        raise ValueError("batch_size and shard_items must be >= 1")
    root = Path(out_dir)
    header = {"key": cache_key(backbone, resolution, crop_type, enhancement),
              "backbone": backbone.name, "config": backbone.config.to_dict(),
              "weights": weights_fingerprint(backbone), "resolution": resolution,
              "crop_type": crop_type, "enhancement": enhancement.to_dict(),
              "sources": [s.describe() for s in sources],
              "crops": list(names), "frames_per_shard": max(1, shard_items // len(names))}
    if info.is_main:
        meta = _start(root, header)
        if not meta["complete"]:
            for stale in root.glob(".*"):  # temporaries of a build killed mid-write
                if stale.is_file():
                    stale.unlink()
    ddp.barrier()
    if not info.is_main:
        meta = _joined(root, header)
    if meta["complete"]:
        if info.is_main:
            logger.info("feature cache %s is complete (%d items)", root, meta["items"])
        return FeatureCache.open(root)
    device = torch.device(device)
    backbone.to(device).eval()
    report = ReadReport()
    done = _done_shards(root)
    per_shard = header["frames_per_shard"]
    shard, frames, writer = 0, [], None
    total = total_frames(sources)
    with tqdm(total=total, unit="frame", desc=f"features {root.name}", dynamic_ncols=True,
              disable=not (progress and info.is_main)) as bar:
        for frame, params in enhance_params(iter_frames(sources, report), enhancement):
            mine = shard % info.world_size == info.rank
            if not frames and mine and shard not in done:
                writer = _ShardWriter(root, shard, backbone, batch_size, device)
            frames.append({"ref": frame.ref.to_dict(), "params": params.tolist()})
            if writer is not None:
                writer.add(make_crops(render(frame.rgb, params, enhancement), crop_type,
                                      resolution))
            bar.update()
            if len(frames) == per_shard:
                _close_shard(root, shard, frames, writer, mine)
                shard, frames, writer = shard + 1, [], None
        if frames:
            _close_shard(root, shard, frames, writer, shard % info.world_size == info.rank)
            shard += 1
    if info.is_main:
        report.log_summary()
    check_not_empty(report, sources)
    if any(i >= shard for i in done):
        raise CacheError(f"{root}: the sources now hold fewer frames than the interrupted "
                         "build had cached; delete the folder to rebuild")
    ddp.barrier()
    if info.is_main:
        _finish(root, meta, shard, report)
    ddp.barrier()
    return FeatureCache.open(root)


def _close_shard(root: Path, shard: int, frames: list[dict[str, Any]],
                 writer: _ShardWriter | None, mine: bool) -> None:
    if writer is not None:
        writer.write(frames)
    elif mine:
        # A shard the interrupted build finished: the sources must give the same frames back.
        _check_same_frames(root, _shard_name(shard), frames)
