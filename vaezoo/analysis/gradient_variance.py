"""Mean, variance and signal-to-noise ratio of an objective's gradient estimate, per parameter group."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass
class GradientStats:
    """Statistics of ``n`` independent draws of one group's gradient, flattened to ``(d,)``.

    - :attr:`mean`, :attr:`variance`: per coordinate (the variance unbiased, over draws).
    - :attr:`snr`: per-coordinate signal-to-noise ratio |E g| / sd(g) (Rainforth et al. 2018).
    - :attr:`total_variance`: trace of the covariance, sum_i Var(g_i).
    - :attr:`norm_snr`: ||E g|| / sqrt(total_variance), one number for the whole group.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    n: int

    @property
    def snr(self) -> torch.Tensor:
        return self.mean.abs() / self.variance.sqrt()

    @property
    def mean_stderr(self) -> torch.Tensor:
        """Standard error of :attr:`mean` per coordinate."""
        return (self.variance / self.n).sqrt()

    @property
    def total_variance(self) -> float:
        return self.variance.sum().item()

    @property
    def norm_snr(self) -> float:
        return (self.mean.norm() / self.variance.sum().sqrt()).item()

    def summary(self) -> dict[str, float]:
        finite = self.snr[torch.isfinite(self.snr)]
        return {
            "dims": float(self.mean.numel()),
            "mean_norm": self.mean.norm().item(),
            "total_variance": self.total_variance,
            "norm_snr": self.norm_snr,
            "mean_snr": finite.mean().item() if finite.numel() else math.nan,
        }


def parameter_groups(
    model: nn.Module, guide: nn.Module, by: Literal["role", "module", "parameter"] = "role"
) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters of ``model`` and ``guide``, grouped; each parameter in one group only.

    ``by="role"``: ``"model"`` and ``"guide"`` (a guide's parameters shared with the model count as
    the model's); ``"module"``: per top-level submodule or direct parameter, e.g. ``"guide.encoder"``,
    ``"model.W"``; ``"parameter"``: one group per named parameter.
    """
    groups: dict[str, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for role, module in (("model", model), ("guide", guide)):
        for name, p in module.named_parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if by == "role":
                key = role
            elif by == "module":
                key = f"{role}.{name.split('.')[0]}"
            elif by == "parameter":
                key = f"{role}.{name}"
            else:
                raise ValueError(f"by must be 'role', 'module' or 'parameter', got {by!r}")
            groups.setdefault(key, []).append(p)
    return groups


def gradient_variance(
    model,
    guide,
    objective,
    batch: torch.Tensor,
    n: int = 100,
    *,
    by: Literal["role", "module", "parameter"] = "role",
    progress: float = math.inf,
) -> dict[str, GradientStats]:
    """Draw the gradient of the training objective ``n`` times on ``batch``; statistics per group.

    Each draw is the gradient of ``-objective.differentiable_loss(model, guide, batch, progress)``
    (the batch-mean objective, ascent direction), taken with :func:`torch.autograd.grad`, so the
    parameters' ``.grad`` are left alone. Moments are accumulated with Welford's algorithm in
    float64, so memory does not grow with ``n``. An estimator with state (a running-average baseline)
    updates it at every draw, as it would while training.

    References:
        - Rainforth et al. (2018), Tighter Variational Bounds are Not Necessarily Better, ICML.
        - Welford (1962), Note on a Method for Calculating Corrected Sums of Squares and Products,
          Technometrics.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 to estimate a variance, got {n}")
    groups = parameter_groups(model, guide, by)
    params = [p for ps in groups.values() for p in ps]
    sizes = [sum(p.numel() for p in ps) for ps in groups.values()]
    mean = torch.zeros(sum(sizes), dtype=torch.float64, device=params[0].device if params else None)
    m2 = torch.zeros_like(mean)
    for i in range(1, n + 1):
        loss = objective.differentiable_loss(model, guide, batch, progress)
        grads = torch.autograd.grad(-loss, params, allow_unused=True)
        flat = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).detach().reshape(-1).to(torch.float64)
                for p, g in zip(params, grads, strict=True)
            ]
        )
        delta = flat - mean
        mean += delta / i
        m2 += delta * (flat - mean)
    variance = m2 / (n - 1)
    return {
        name: GradientStats(m, v, n)
        for name, m, v in zip(groups, mean.split(sizes), variance.split(sizes), strict=True)
    }
