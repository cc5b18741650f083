"""Importance-sampled log p(x) per datapoint, with particles vectorized in memory-bounded chunks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from vaezoo.data import batches, num_batches
from vaezoo.inference.traces import run_pair
from vaezoo.nets import evaluating


@dataclass
class LogLikelihood:
    """Per-datapoint estimates log p̂(x_i) = log (1/k) sum_j p(x_i, z_j) / q(z_j | x_i), z_j ~ q.

    ``mc_stderr[i]`` is the delta-method Monte Carlo standard error of log p̂(x_i),
    sqrt(Var_q(w) / k) / E_q(w), from the same k weights. The estimate is a stochastic lower bound
    (the IWAE-k bound): its bias is about -mc_stderr^2 / 2, small once mc_stderr is.

    - :attr:`mean`: the average over the data set, the number reported as -NLL.
    - :attr:`stderr`: Monte Carlo standard error of that average (estimator noise, given the data).
    - :attr:`data_stderr`: standard error of the average over draws of the test set.
    """

    per_datapoint: torch.Tensor
    mc_stderr: torch.Tensor
    k: int

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

    def __str__(self) -> str:
        return (
            f"log p(x) = {self.mean:.3f} ± {self.stderr:.3f} (MC s.e.) "
            f"± {self.data_stderr:.3f} (test-set s.e.) "
            f"nats, IS k={self.k}, n={len(self.per_datapoint)}"
        )


def _chunk_size(k: int, batch: int, x_numel: int, max_elements: int) -> int:
    return max(1, min(k, max_elements // max(1, batch * x_numel)))


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
) -> LogLikelihood:
    """Importance-sampled log p(x) of every datapoint in ``data``, with ``guide`` as proposal.

    Particles run ``c`` at a time under the particle plate, with ``c`` chosen so a chunk holds at
    most ``max_elements`` elements of x-sized tensors; log-sum-exp accumulators merge the chunks,
    so k=5000 needs no more memory than k=c. Modules are put in eval mode for the run.

    :param data: a tensor ``(n, *x_shape)``, an :class:`~vaezoo.data.ImageData`, or a DataLoader.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    estimates, errors = [], []
    with evaluating(model, guide):
        for x in tqdm(
            batches(data, batch_size),
            total=num_batches(data, batch_size),
            disable=not progress,
            desc=f"IS k={k}",
        ):
            c = _chunk_size(k, x.shape[0], model.x_numel, max_elements)
            lse = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
            lse2 = lse.clone()
            done = 0
            while done < k:
                m = min(c, k - done)
                log_w = run_pair(model, guide, x, m).log_weight().double()
                lse = torch.logaddexp(lse, log_w.logsumexp(0))
                lse2 = torch.logaddexp(lse2, (2 * log_w).logsumexp(0))
                done += m
            log_px = lse - math.log(k)
            # Var(w) / E(w)^2 = E(w^2) / E(w)^2 - 1, from the same weights.
            rel_var = (lse2 - math.log(k) - 2 * log_px).exp() - 1
            estimates.append(log_px)
            errors.append((rel_var.clamp(min=0) / k).sqrt())
    return LogLikelihood(torch.cat(estimates), torch.cat(errors), k)
