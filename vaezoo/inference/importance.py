"""Importance-sampled log p(x) per datapoint, with particles vectorized in memory-bounded chunks.

:func:`log_mean_weights` is the loop every estimator of log p(x) shares (importance sampling here,
annealed importance sampling in :mod:`vaezoo.inference.ais`): batches of datapoints, and for each
batch chunks of log weights merged by log-sum-exp. Results are :class:`Estimate` s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from vaezoo import parallel
from vaezoo.config import check_argument
from vaezoo.data import batches, num_batches
from vaezoo.devices import module_device
from vaezoo.inference.traces import run_pair
from vaezoo.inputs import check_data
from vaezoo.nets import evaluating


@dataclass
class Estimate:
    """A per-datapoint estimate (a bound, log p̂(x), a gap) with its Monte Carlo standard errors.

    - :attr:`mean`: the average over the data set.
    - :attr:`stderr`: Monte Carlo standard error of that average (estimator noise, given the data).
    - :attr:`data_stderr`: standard error of the average over draws of the data set.

    Differences of two estimates on the same datapoints (``a - b``) add the Monte Carlo variances.
    """

    per_datapoint: torch.Tensor
    mc_stderr: torch.Tensor

    @property
    def mean(self) -> float:
        return self.per_datapoint.mean().item()

    @property
    def stderr(self) -> float:
        return (self.mc_stderr.pow(2).sum().sqrt() / len(self.mc_stderr)).item()

    @property
    def data_stderr(self) -> float:
        n = len(self.per_datapoint)
        return (self.per_datapoint.std() / math.sqrt(n)).item() if n > 1 else float("nan")

    def __sub__(self, other: Estimate) -> Estimate:
        return Estimate(
            self.per_datapoint - other.per_datapoint, (self.mc_stderr.pow(2) + other.mc_stderr.pow(2)).sqrt()
        )

    @staticmethod
    def cat(parts: Iterable[Estimate]) -> Estimate:
        """One estimate over the datapoints of ``parts``, in order."""
        parts = list(parts)
        return Estimate(torch.cat([p.per_datapoint for p in parts]), torch.cat([p.mc_stderr for p in parts]))


@dataclass
class LogLikelihood(Estimate):
    """Per-datapoint estimates log p̂(x_i) = log (1/k) sum_j p(x_i, z_j) / q(z_j | x_i), z_j ~ q.

    ``mc_stderr[i]`` is the delta-method Monte Carlo standard error of log p̂(x_i),
    sqrt(Var_q(w) / k) / E_q(w), from the same k weights. The estimate is a stochastic lower bound
    (the IWAE-k bound): its bias is about -mc_stderr^2 / 2, small once mc_stderr is. :attr:`mean`
    is the number reported as -NLL.
    """

    k: int

    def __str__(self) -> str:
        return (
            f"log p(x) = {self.mean:.3f} ± {self.stderr:.3f} (MC s.e.) "
            f"± {self.data_stderr:.3f} (test-set s.e.) "
            f"nats, IS k={self.k}, n={len(self.per_datapoint)}"
        )


def chunk_size(k: int, batch: int, x_numel: int, max_elements: int) -> int:
    """Particles per chunk (of ``k``) so that a chunk holds at most ``max_elements`` x-sized elements."""
    return max(1, min(k, max_elements // max(1, batch * x_numel)))


class LogMeanWeight:
    """log (1/k) sum_j w_j per datapoint and its delta-method s.e., merged over chunks of log weights.

    Log-sum-exp accumulators of w and w^2, so k = 5000 weights need no more memory than one chunk;
    they live on ``device``, where the weights are computed.
    """

    def __init__(self, batch: int, device: torch.device | str | None = None):
        self.lse = torch.full((batch,), -math.inf, dtype=torch.float64, device=device)
        self.lse2 = self.lse.clone()
        self.k = 0

    def add(self, log_w: torch.Tensor) -> None:
        """Merge a chunk of log weights of shape ``(m, batch)``."""
        log_w = log_w.double()
        self.lse = torch.logaddexp(self.lse, log_w.logsumexp(0))
        self.lse2 = torch.logaddexp(self.lse2, (2 * log_w).logsumexp(0))
        self.k += log_w.shape[0]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p̂, Monte Carlo s.e. of log p̂), each of shape ``(batch,)``."""
        log_px = self.lse - math.log(self.k)
        # Var(w) / E(w)^2 = E(w^2) / E(w)^2 - 1, from the same weights.
        rel_var = (self.lse2 - math.log(self.k) - 2 * log_px).exp() - 1
        return log_px, (rel_var.clamp(min=0) / self.k).sqrt()


def log_mean_weights(
    model,
    data,
    k: int,
    log_weights: Callable[[torch.Tensor, int], torch.Tensor],
    *,
    batch_size: int,
    max_elements: int,
    progress: bool,
    desc: str,
    split: bool = False,
) -> Estimate:
    """log (1/k) sum_j w_j for every datapoint in ``data``, and its delta-method s.e.

    ``log_weights(x, m)`` returns ``m`` independent log weights per datapoint of the batch ``x``,
    shape ``(m, batch)``; it is called with ``m`` chosen so a chunk holds at most ``max_elements``
    elements of x-sized tensors, until ``k`` weights per datapoint are merged.

    With ``split`` under torchrun, each rank estimates a contiguous part of ``data`` and every rank
    returns the estimates of all datapoints, in order; every rank must make the call.
    """
    parts = []
    where = module_device(model)
    w = parallel.world() if split else parallel.World()
    part = list(parallel.shard(len(data), w)) if w.size > 1 else None
    for x in tqdm(
        batches(data, batch_size, device=where, order=part),
        total=num_batches(part if part is not None else data, batch_size),
        disable=not progress or not w.main,
        desc=desc,
    ):
        c = chunk_size(k, x.shape[0], model.x_numel, max_elements)
        weights = LogMeanWeight(x.shape[0], x.device)
        while weights.k < k:
            weights.add(log_weights(x, min(c, k - weights.k)))
        parts.append(Estimate(*weights.result()))
    if w.size == 1:
        return Estimate.cat(parts)
    mine = Estimate.cat(parts) if parts else Estimate(torch.empty(0), torch.empty(0))
    return Estimate(parallel.gather_rows(mine.per_datapoint, w), parallel.gather_rows(mine.mc_stderr, w))


@torch.no_grad()
def log_likelihood(
    model,
    guide,
    data,
    k: int = 5000,
    *,
    batch_size: int = 100,
    max_elements: int = 2**23,
    progress: bool = False,
    split: bool = False,
) -> LogLikelihood:
    """Importance-sampled log p(x) of every datapoint in ``data``, with ``guide`` as proposal.

    Particles run ``c`` at a time under the particle plate, with ``c`` chosen so a chunk holds at
    most ``max_elements`` elements of x-sized tensors; log-sum-exp accumulators merge the chunks,
    so k=5000 needs no more memory than k=c. Modules are put in eval mode for the run.

    :param data: a tensor ``(n, *x_shape)``, an :class:`~vaezoo.data.ImageData`, or a DataLoader.
    :param split: under torchrun, split ``data`` over the ranks (every rank calls, every rank gets
        all estimates; see :func:`log_mean_weights`).
    """
    k = check_argument("k", k, int, min=1)
    data = check_data(model, data, "data")

    def log_weights(x: torch.Tensor, m: int) -> torch.Tensor:
        return run_pair(model, guide, x, m).log_weight()

    with evaluating(model, guide):
        r = log_mean_weights(
            model,
            data,
            k,
            log_weights,
            batch_size=batch_size,
            max_elements=max_elements,
            progress=progress,
            desc=f"IS k={k}",
            split=split,
        )
    return LogLikelihood(r.per_datapoint, r.mc_stderr, k)
