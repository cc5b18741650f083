"""The multi-stage VAE's training loss: KL, an l2 loss of the coarse image and an l1 loss of the fine one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vaezoo.errors import ConfigError
from vaezoo.inference.auxiliary_terms import auxiliary_counts, require_pathwise, stages
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import run_pair
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class MultiStageConfig:
    l2_weight: float = field(
        default=1.0, metadata={"help": "weight of the coarse stage's squared error ||x - m1||^2", "min": 0}
    )
    l1_weight: float = field(
        default=1.0, metadata={"help": "weight of the last stage's absolute error ||x - m2||_1", "min": 0}
    )
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    beta: float = field(default=1.0, metadata={"help": "weight of the latent (KL) term", "min": 0})
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "epochs over which the latent weight rises linearly from 0 to beta", "min": 0},
    )
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


@register_objective("multistage", MultiStageConfig)
class MultiStage(Objective):
    """J(x) = -E_q[l2_weight ||x - m1(z)||^2 + l1_weight ||x - m2(z)||_1] - KL(q(z | x) || p(z)).

    Cai, Gao & Ji's loss, negated so that it is maximized like a bound: m1 is the mean of the
    model's single auxiliary (coarse) stage and m2 the mean of its observed (last) stage
    (:mod:`vaezoo.models.auxiliary`), both compared with the same x, errors summed over pixels. The
    paper sums the KL term, the l2 loss and the l1 loss; both weights are configurable.

    J is not the ELBO of any generative model. With a Gaussian of fixed variance 1 / (2 l2_weight)
    for the coarse stage and a Laplace of fixed scale 1 / l1_weight for the last, J equals the
    :class:`~vaezoo.inference.stepwise.Stepwise` objective up to a constant, and still scores x
    twice. :meth:`per_datapoint` (the training loss) is J; :meth:`bound` is the ELBO of the model's
    own program (x observed once, under its last stage with its learned scales), a lower bound on
    log p(x) to report.

    References:
        - Cai, Gao & Ji (2017), Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image
          Generation, arXiv:1705.07202.
    """

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.elbo = ELBO(num_particles=c.num_particles, analytic_kl=c.analytic_kl)

    def reconstruction_terms(self, pair) -> torch.Tensor:
        """-(l2_weight ||x - m1||^2 + l1_weight ||x - m2||_1) per particle and datapoint, ``(k, batch)``."""
        c = self.config
        total = 0.0
        for s in stages(pair, "multistage"):
            if len(s.auxiliary) != 1:
                raise _not_two_stage(len(s.auxiliary))
            l2 = s.event_sum((s.value - s.auxiliary[0].mean) ** 2)
            l1 = s.event_sum((s.value - s.observed.mean).abs())
            total = total - s.reduce(pair, c.l2_weight * l2 + c.l1_weight * l1)
        return total

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        with scaled_latents(latent_weight):
            pair = run_pair(model, guide, x, self.config.num_particles)
        require_pathwise(pair, guide, "multistage")
        return self.elbo.latent_terms(pair, self.reconstruction_terms(pair)).mean(0)

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        return self.elbo.per_datapoint(model, guide, x)

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        for n in auxiliary_counts(model, guide, x, "multistage"):
            if n != 1:
                raise _not_two_stage(n)


def _not_two_stage(n: int) -> ConfigError:
    return ConfigError(
        f"the multistage objective needs a model with exactly one coarse stage before the observed one, "
        f"and this model carries {n}; use multistage_vae with stages=2, or train with stepwise or elbo"
    )


__all__ = ["MultiStage", "MultiStageConfig"]
