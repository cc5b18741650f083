"""A likelihood term at every stage: the training objective of models that draw x in stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vaezoo.inference.auxiliary_terms import auxiliary_counts, require_pathwise, stages
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import run_pair
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class StepwiseConfig:
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    auxiliary_weight: float = field(
        default=1.0,
        metadata={"help": "weight of each earlier stage's log-likelihood (1: the paper's sum)", "min": 0},
    )
    beta: float = field(default=1.0, metadata={"help": "weight of the latent (KL) term", "min": 0})
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "epochs over which the latent weight rises linearly from 0 to beta", "min": 0},
    )
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


@register_objective("stepwise", StepwiseConfig)
class Stepwise(Objective):
    """J(x) = sum_i w_i E_q log p_i(x | z) - KL(q(z | x) || p(z)): every stage scored against the data.

    A model that draws x in stages observes x once, under its last stage p_n, and carries the
    earlier stages p_1..p_{n-1} on the observed site as auxiliary likelihoods
    (:mod:`vaezoo.models.auxiliary`). This objective adds ``auxiliary_weight`` times their
    log-likelihoods of the same x to the ELBO (w_n = 1). With weight 1 on the sequential VAE it is
    the training objective of Zhao, Song & Ermon (2017a), a likelihood term in pixel space at every
    step; on the multi-stage VAE it is the likelihood form of Cai, Gao & Ji's two losses.

    J is not a bound on log p(x): it scores one x n times, which no normalized model of x does.
    :meth:`per_datapoint` (the training loss) is J; :meth:`bound` is the ELBO of the model's own
    program, a lower bound on log p(x), with the same particles and KL terms. At
    ``auxiliary_weight=0`` the two agree.

    References:
        - Zhao, Song & Ermon (2017a), Towards Deeper Understanding of Variational Autoencoding
          Models, arXiv:1702.08658.
        - Cai, Gao & Ji (2017), Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image
          Generation, arXiv:1705.07202.
    """

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.elbo = ELBO(num_particles=c.num_particles, analytic_kl=c.analytic_kl)

    def auxiliary_terms(self, pair) -> torch.Tensor:
        """sum over earlier stages of log p_i(x), shape ``(k, batch)``, unweighted."""
        total = 0.0
        for s in stages(pair, "stepwise"):
            for p in s.auxiliary:
                total = total + s.reduce(pair, p.log_prob(s.value))
        return total

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        with scaled_latents(latent_weight):
            pair = run_pair(model, guide, x, self.config.num_particles)
        require_pathwise(pair, guide, "stepwise")
        terms = self.elbo.particle_terms(pair) + self.config.auxiliary_weight * self.auxiliary_terms(pair)
        return terms.mean(0)

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        return self.elbo.per_datapoint(model, guide, x)

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        auxiliary_counts(model, guide, x, "stepwise")


__all__ = ["Stepwise", "StepwiseConfig"]
