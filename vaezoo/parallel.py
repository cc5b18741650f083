"""Data parallelism on PyTorch's own runtime: the process group torchrun starts, and what each rank does.

``torchrun --nproc-per-node N -m vaezoo train ...`` (or any script launched by torchrun that calls
:func:`~vaezoo.inference.fit`) runs N copies of the program; each reads ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` from the environment torchrun sets. :func:`join` initializes
:mod:`torch.distributed` from it (gloo on CPU, NCCL on CUDA), with a timeout, so a rank whose peer
died stops with a message instead of waiting forever. Without torchrun everything here is the
identity: one process, rank 0, the whole data set.

The split of the work follows one rule: a run is defined by its *global* batch, whatever the number
of processes. :func:`rank_order` deals each epoch's shuffled order to the ranks the way
:class:`torch.utils.data.DistributedSampler` does (re-seeded every epoch), so the N per-rank batches
of a step are together the one batch a single process would draw; with the loss a mean over the
batch and DistributedDataParallel averaging gradients, a step is the single-process step up to the
order of float sums. That is also why a checkpoint resumes under any number of processes that
divides the batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from vaezoo.errors import ConfigError, TrainingError

#: Seconds a collective waits for the other ranks before it fails (``VAEZOO_DIST_TIMEOUT`` overrides).
TIMEOUT = 300.0


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run: ``rank`` of ``size``, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this rank writes checkpoints, logs and figures (rank 0)."""
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun (or anything that sets its environment) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """The current :class:`World`: from the initialized process group, else one process."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    return World()


def _timeout() -> float:
    raw = os.environ.get("VAEZOO_DIST_TIMEOUT", str(TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"VAEZOO_DIST_TIMEOUT={raw!r} is not a positive number of seconds; unset or fix it")
    return seconds


def join(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (once), and the device this rank computes on.

    The backend follows the device: NCCL for CUDA, gloo otherwise. A CUDA device without an index
    becomes this rank's GPU, ``cuda:LOCAL_RANK``. Without torchrun: ``(World(), device)``.

    :raises ConfigError: when torchrun starts more processes on a machine than it has GPUs.
    """
    if not launched():
        return world(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and device.index is None:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"--nproc-per-node starts rank {local_rank} on a machine with {torch.cuda.device_count()} "
                "GPU(s); start at most one process per GPU, or use --device cpu"
            )
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=_timeout()))
    return world(), device


def check_split(batch_size: int, n: int, w: World, what: str = "--batch-size") -> int:
    """The per-rank batch: ``batch_size`` (the global batch) split evenly over the ranks.

    :raises ConfigError: when the data have fewer datapoints than there are processes, or the
        batch does not split evenly (the message lists batch sizes that do).
    """
    if w.size == 1:
        return batch_size
    if w.size > n:
        raise ConfigError(
            f"{w.size} processes for {n} datapoints: every process needs data; "
            f"start at most {n} processes (--nproc-per-node) or use more data"
        )
    if batch_size % w.size:
        lower = batch_size - batch_size % w.size
        options = ", ".join(str(b) for b in (lower, lower + w.size) if b > 0)
        counts = ", ".join(str(c) for c in range(1, min(batch_size, 64) + 1) if batch_size % c == 0)
        raise ConfigError(
            f"{what} {batch_size} is the batch of one optimizer step over all {w.size} processes and does "
            f"not split evenly over them; use a multiple of {w.size} (e.g. {options}), or a number of "
            f"processes that divides it ({counts}), which is what a resumed run, whose batch is fixed, needs",
            key="batch_size",
            value=batch_size,
        )
    return batch_size // w.size


def rank_order(n: int, seed: int, epoch: int, w: World) -> list[int]:
    """This rank's share of epoch ``epoch``'s shuffled order of ``n`` datapoints.

    The order is ``torch.randperm(n)`` drawn with seed ``seed + epoch`` (as
    :class:`~torch.utils.data.DistributedSampler` re-seeds it each epoch); rank r takes every
    ``size``-th index from r on, the order padded by repeating its first indices when ``n`` does not
    divide evenly, so every rank takes as many steps. One process: the whole order.
    """
    sampler = DistributedSampler(range(n), num_replicas=w.size, rank=w.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def shard(n: int, w: World) -> range:
    """The contiguous part of ``range(n)`` that rank ``w.rank`` evaluates (sizes differ by at most 1)."""
    return range(w.rank * n // w.size, (w.rank + 1) * n // w.size)


def _lost_contact(e: RuntimeError) -> bool:
    """Whether ``e`` is a failed exchange between ranks rather than an error of the program itself."""
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout", "peer"))


@contextlib.contextmanager
def collective(what: str, w: World) -> Iterator[None]:
    """Turn a failed exchange with the other ranks (one died, or timed out) into a :class:`TrainingError`."""
    if w.size == 1:
        yield
        return
    try:
        yield
    except RuntimeError as e:
        if isinstance(e, TrainingError) or not _lost_contact(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(
            f"rank {w.rank} of {w.size}: {what} failed because another process stopped or did not answer "
            f"within the timeout ({first}); see the first failing rank's message, then run the same "
            "command again to resume from the last checkpoint"
        ) from None


def gather_rows(part: torch.Tensor, w: World) -> torch.Tensor:
    """Every rank's ``part`` (rows of a per-datapoint result), concatenated in rank order, on every rank."""
    if w.size == 1:
        return part
    parts: list[torch.Tensor | None] = [None] * w.size
    with collective("gathering per-datapoint results", w):
        dist.all_gather_object(parts, part.detach().cpu())
    return torch.cat(parts).to(part.device)


def sum_over_ranks(values: torch.Tensor, w: World) -> torch.Tensor:
    """``values`` summed over the ranks (in place, returned); one process: unchanged."""
    if w.size > 1:
        with collective("summing results", w):
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_state(tensors, w: World) -> None:
    """Average floating tensors (e.g. an objective's running baseline) over the ranks, in place."""
    if w.size == 1:
        return
    with collective("averaging the objective's state", w):
        for t in tensors:
            if torch.is_tensor(t) and t.is_floating_point():
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(w.size)


def broadcast(tensors, w: World) -> None:
    """Give every rank rank 0's values of ``tensors`` (in place)."""
    if w.size == 1:
        return
    with collective("receiving rank 0's parameters", w), torch.no_grad():
        for t in tensors:
            dist.broadcast(t, src=0)


def average_gradients(params, w: World) -> None:
    """Average the ``.grad`` of ``params`` over the ranks, in one exchange (what DDP does in ``backward``)."""
    grads = [p.grad for p in params if p.grad is not None]
    if w.size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    with collective("averaging gradients", w):
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def all_objects(obj, w: World) -> list:
    """``obj`` of every rank, in rank order (e.g. each rank's RNG state for the checkpoint)."""
    if w.size == 1:
        return [obj]
    out: list = [None] * w.size
    with collective("collecting every rank's state", w):
        dist.all_gather_object(out, obj)
    return out
