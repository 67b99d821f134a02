"""The resumable training state (docs/stego.md §7): head, probe, both optimisers, the step and
every rank's random streams, written atomically; read back only with the same maths settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from uwstego.atomic import atomic_path
from uwstego.training import distributed as ddp
from uwstego.training.settings import TrainSettings
from uwstego.training.step import TrainRun, rank_seed

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STATE_FORMAT = "uwstego.train_state"
# Settings that may change between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = frozenset({"steps", "log_every", "histogram_every", "checkpoint_every",
                               "kmeans_samples"})


def _rng_state(run: TrainRun) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "generator": run.generator.get_state()}
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def _set_rng_state(run: TrainRun, state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    run.generator.set_state(state["generator"])
    if "cuda" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], run.device)


def save_state(path: Path, run: TrainRun, step: int, rng_states: Sequence[dict]) -> None:
    """Atomic training-state checkpoint (rank 0 calls it with every rank's RNG state)."""
    state = {
        "format": STATE_FORMAT,
        "step": step,
        "settings": run.settings.to_dict(),
        "head_config": run.head.config.to_dict(),
        "world_size": len(rng_states),
        "module": run.module.state_dict(),
        "optimizers": [opt.state_dict() for opt in run.optimizers],
        "rng": list(rng_states),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def checkpoint(path: Path, run: TrainRun, step: int, info: ddp.DistInfo) -> None:
    """Every rank calls this alike: rank 0 writes the state with every rank's RNG state."""
    rng_states = ddp.gather_objects(_rng_state(run))
    if info.is_main:
        save_state(path, run, step, rng_states)
    ddp.barrier()


def load_state(path: Path, settings: TrainSettings) -> dict[str, Any]:
    """The state at ``path``, refused when a setting that changes the maths differs."""
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} does not exist (no checkpoint was "
                                "written yet); start without --resume")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a uwstego training state")
    saved = state["settings"]
    now = settings.to_dict()
    changed = sorted(k for k in now if saved.get(k) != now[k] and k not in RESUMABLE_CHANGES)
    if changed:
        raise ValueError(f"cannot resume {path}: settings changed since it was written: "
                         + ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in changed))
    return state


def restore(run: TrainRun, state: dict[str, Any], info: ddp.DistInfo) -> int:
    """Put ``state`` into ``run``; the step it was saved at."""
    run.module.load_state_dict(state["module"])
    for opt, opt_state in zip(run.optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    if state["world_size"] == info.world_size:
        _set_rng_state(run, state["rng"][info.rank])
    else:
        log.warning("resuming with %d process(es) after %d: batches and random draws will "
                    "differ from an uninterrupted run", info.world_size, state["world_size"])
        torch.manual_seed(rank_seed(run.settings.seed + state["step"], info.rank))
    return int(state["step"])
