"""What a training checkpoint holds besides weights: the run's definition, RNG states, and resuming."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from vaezoo import checkpoint
from vaezoo.errors import CheckpointError


def run_spec(model, guide, objective, batch_size: int, lr: float, seed: int, data: dict) -> dict[str, Any]:
    """Everything that defines a run; a checkpoint resumes only a run whose spec is equal.

    ``batch_size`` is the batch of one optimizer step over all processes, so the number of
    processes is not part of the run.
    """
    return {
        "model": checkpoint.spec(model),
        "guide": checkpoint.spec(guide),
        "objective": checkpoint.spec(objective),
        "train": {"batch_size": batch_size, "lr": lr, "seed": seed},
        "data": data,
    }


def differences(saved: Any, now: Any, where: str = "") -> list[str]:
    """``"key.path: saved -> now"`` for each leaf where two run specs differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [line for k in sorted(set(saved) | set(now), key=str)
                for line in differences(saved.get(k, "(not recorded)"), now.get(k, "(not recorded)"),
                                        f"{where}.{k}" if where else str(k))]
    return [] if saved == now else [f"{where}: {saved!r} -> {now!r}"]


def resume(path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, refused with the list of differences if it holds another run."""
    saved = checkpoint.load(path)
    diff = differences({k: saved.get(k, "(not recorded)") for k in spec}, spec)
    if diff:
        mismatched = [k for k in spec if saved.get(k) != spec[k]]
        raise CheckpointError(
            f"{path} holds a run with different {', '.join(mismatched)} ({'; '.join(diff)}); "
            "use another --out (Python: out=), or --no-resume (resume=False) to start over in this folder"
        )
    return saved


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    # A run resumed on another kind of device continues with that device's own generator.
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of rank ``rank`` > 0 from epoch ``epoch`` on, so ranks draw different noise."""
    return (seed * 1_000_003 + 7_919 * rank + epoch) % 2**63


def restore_rng(saved: Any, rank: int, seed: int, epoch: int, device: torch.device) -> None:
    """Continue rank ``rank``'s random streams from a checkpoint's ``rng`` entry.

    The entry holds one state per rank of the run that wrote it (a single state in checkpoints of
    one process). A rank the writing run did not have is seeded afresh, so a run resumed on more
    processes differs from the uninterrupted one only in those ranks' noise.
    """
    states = saved if isinstance(saved, list) else [saved]
    if rank < len(states):
        set_rng_state(states[rank], device)
    else:
        torch.manual_seed(rank_seed(seed, rank, epoch))
        random.seed(rank_seed(seed, rank, epoch))


def kept(path: Path | None, epochs_saved: int) -> str:
    if path is None or not epochs_saved:
        return "no checkpoint was written"
    return f"the last good checkpoint (epoch {epochs_saved}) is kept at {path}"
