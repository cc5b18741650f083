"""The interface every training objective shares, and the latent-weight (warm-up, beta) schedule."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from vaezoo.config import resolve
from vaezoo.inference.messengers import ScaleLatents


class Objective:
    """A bound on log p(x) that trains a model/guide pair; it never knows which model it is fed.

    Subclasses are registered (``@register_objective``) with a config dataclass and implement
    :meth:`per_datapoint`. Their config may have ``beta`` and ``kl_warmup`` fields, read by
    :meth:`latent_weight`.

    - :meth:`differentiable_loss`: the scalar to minimize, the batch mean of the negative training
      objective (warm-up and beta applied), so learning rates do not depend on the batch size.
    - :meth:`loss`: the same number as a float, without a graph.
    - :meth:`bound`: the bound itself per datapoint, at full weight: what is reported.
    """

    config_class: type

    def __init__(self, config: Any = None, **overrides: Any):
        self.config = resolve(type(self).config_class, config, overrides)

    def latent_weight(self, progress: float = math.inf) -> float:
        """beta times the warm-up factor min(1, progress / kl_warmup); progress in epochs."""
        beta = getattr(self.config, "beta", 1.0)
        warmup = getattr(self.config, "kl_warmup", 0.0)
        if warmup <= 0:
            return beta
        return beta * min(1.0, max(progress, 0.0) / warmup)

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        """The objective for each datapoint, shape ``(batch,)``, with latent terms scaled."""
        raise NotImplementedError

    def differentiable_loss(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> torch.Tensor:
        return -self.per_datapoint(model, guide, x, self.latent_weight(progress)).mean()

    def loss(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, x, progress).item()

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        return self.per_datapoint(model, guide, x, 1.0)

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self.config).items())
        return f"{getattr(type(self), 'registry_name', type(self).__name__)}({fields})"


def scaled_latents(weight: float):
    """A :class:`ScaleLatents` context, or a no-op when ``weight == 1``."""
    return contextlib.nullcontext() if weight == 1.0 else ScaleLatents(weight)
