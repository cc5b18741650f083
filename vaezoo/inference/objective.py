"""The interface every training objective shares, and the latent-weight (warm-up, beta) schedule."""

from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar

import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
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

    Hooks for estimators that wrap an objective
    (:class:`~vaezoo.inference.score_function.ScoreFunction`), which objectives implement if they
    support it: :meth:`score_function_fields` / :meth:`from_score_function_fields` describe the
    objective in the wrapper's flat config (so checkpoints rebuild it), and a bound that is the
    log-mean of per-particle importance weights sets :attr:`multi_sample` and implements
    :meth:`log_weights` (per-particle control variates such as VIMCO need them).

    What an objective may own, which :func:`~vaezoo.inference.fit.fit` handles without knowing the
    objective:

    - ``parameters()``: trainable parameters that share the model's optimizer and gradient step
      (a learned baseline);
    - ``state_dict()`` / ``load_state_dict(state)``: everything the objective owns, written into every
      checkpoint and restored on resume (baselines' running averages; a discriminator with its own
      optimizer). ``load_state_dict`` raises
      :class:`~vaezoo.errors.CheckpointError` naming the fix when ``state`` lacks a part;
    - :meth:`adversary_step`: an inner step of an adversary the objective trains with its own
      optimizer, run before each gradient step of model and guide (:func:`has_adversary`).
    """

    config_class: type
    #: Whether :meth:`per_datapoint` is log (1/k) sum_j w_j of the weights :meth:`log_weights` gives.
    multi_sample: ClassVar[bool] = False
    #: Whether the objective evaluates log p(x | z); the likelihood-free one (``lfvi``) only samples x.
    needs_likelihood: ClassVar[bool] = True

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

    def to(self, device: torch.device | str) -> Objective:
        """Move what the objective owns (baseline networks, running averages) to ``device``; return it.

        Objectives without tensors of their own have nothing to move.
        """
        return self

    def shape_parameters(self, x: torch.Tensor) -> None:
        """Give lazily shaped parameters the objective owns their shapes from the batch ``x``, without
        changing any state; objectives without lazy parameters have nothing to do."""

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` naming the reason if this objective cannot train ``model`` with
        ``guide`` on batches like ``x``; objectives that take any pair have nothing to check."""

    def adversary_step(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> dict[str, float]:
        """Train the objective's own adversary (a discriminator, lfvi's ratio network) on the batch
        ``x`` with its own optimizer, before the model and guide take their step on the same batch;
        return named numbers (e.g. ``{"discriminator_loss": ...}``) that
        :func:`~vaezoo.inference.fit.fit` averages over each epoch into its record. Objectives without
        an adversary have nothing to do."""
        return {}

    def log_weights(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        """log w_j per particle and datapoint, shape ``(k, batch)``, for a :attr:`multi_sample` bound."""
        raise ConfigError(f"{self.describe()} is not a bound built from per-particle importance weights")

    def score_function_fields(self) -> dict[str, Any]:
        """This objective as fields of a :class:`~vaezoo.inference.score_function.ScoreFunctionConfig`:
        ``num_particles`` (its samples per datapoint) and those of ``beta``, ``kl_warmup``,
        ``analytic_kl`` it has. Raises :class:`ConfigError` if it has no score-function form."""
        raise ConfigError(
            f"{self.describe()} has no score-function form (its class implements no score_function_fields)"
        )

    @classmethod
    def from_score_function_fields(cls, fields: Any) -> Objective:
        """The objective that :meth:`score_function_fields` described; ``fields`` has those attributes."""
        raise ConfigError(f"{cls.__name__} has no score-function form")

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self.config).items())
        return f"{getattr(type(self), 'registry_name', type(self).__name__)}({fields})"


def has_adversary(objective: Any) -> bool:
    """Whether ``objective`` overrides :meth:`Objective.adversary_step` (trains an adversary of its own)."""
    step = getattr(type(objective), "adversary_step", Objective.adversary_step)
    return step is not Objective.adversary_step


def scaled_latents(weight: float | torch.Tensor):
    """A :class:`ScaleLatents` context, or a no-op when ``weight == 1``.

    A tensor ``weight`` always scales: it is an input of a traced step
    (:mod:`vaezoo.inference.compiled`), whose value must not decide the program's structure.
    """
    if isinstance(weight, torch.Tensor):
        return ScaleLatents(weight)
    return contextlib.nullcontext() if weight == 1.0 else ScaleLatents(weight)
