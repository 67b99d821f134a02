"""torch.distributed in one place: start from torchrun's environment, rank facts, collectives.

Every helper is a no-op in a single process, so the training loop reads the same either way.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# Ranks wait at barriers for the slowest one's share of a feature-cache build: allow for hours.
INIT_TIMEOUT = datetime.timedelta(hours=6)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def init_from_env(device: str) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); otherwise stay single.

    The backend is NCCL for CUDA devices and gloo for CPU. Returns the rank facts.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=INIT_TIMEOUT)
        log.info("joined process group: rank %d of %d (%s)", dist.get_rank(), world, backend)
    return dist_info()


def process_device(device: str, info: DistInfo) -> torch.device:
    """One GPU per process under DDP: ``cuda`` becomes ``cuda:<local_rank>``."""
    if device == "cuda" and info.active:
        return torch.device("cuda", info.local_rank)
    return torch.device(device)


def barrier() -> None:
    if dist_info().active:
        dist.barrier()


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    if not dist_info().active:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / dist.get_world_size()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects)."""
    info = dist_info()
    if not info.active:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
