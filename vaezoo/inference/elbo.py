"""The evidence lower bound, per datapoint, with analytic KL terms where they are valid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class ELBOConfig:
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    beta: float = field(
        default=1.0, metadata={"help": "weight of the latent (KL) term; beta-VAE for beta > 1", "min": 0}
    )
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "epochs over which the latent weight rises linearly from 0 to beta", "min": 0},
    )
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


@register_objective("elbo", ELBOConfig)
class ELBO(Objective):
    """L(x) = E_q(z|x)[log p(x | z)] - KL(q(z | x) || p(z)), estimated with ``num_particles`` samples.

    The KL term of a latent site is taken in closed form when ``analytic_kl`` is on, a closed form
    is registered for the pair of distributions, and it is unbiased to do so (see
    :meth:`~vaezoo.inference.traces.PairTrace.analytic_kl`); otherwise the site contributes the
    Monte Carlo term log p(z) - log q(z | x). Either way the estimate is unbiased for the ELBO;
    the closed form has lower variance. Warm-up (Sønderby et al. 2016; Bowman et al. 2016) and
    beta (Higgins et al. 2017) scale the latent term through
    :class:`~vaezoo.inference.messengers.ScaleLatents`.

    References:
        - Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR.
        - Sønderby et al. (2016), Ladder Variational Autoencoders, NIPS.
        - Higgins et al. (2017), beta-VAE, ICLR.
    """

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        with scaled_latents(latent_weight):
            pair = run_pair(model, guide, x, self.config.num_particles)
        return self.particle_terms(pair).mean(0)

    def score_function_fields(self) -> dict[str, Any]:
        c = self.config
        return {
            "num_particles": c.num_particles,
            "beta": c.beta,
            "kl_warmup": c.kl_warmup,
            "analytic_kl": c.analytic_kl,
        }

    @classmethod
    def from_score_function_fields(cls, fields: Any) -> ELBO:
        return cls(
            num_particles=fields.num_particles,
            analytic_kl=fields.analytic_kl,
            beta=fields.beta,
            kl_warmup=fields.kl_warmup,
        )

    def particle_terms(self, pair: PairTrace) -> torch.Tensor:
        """The estimate's term of every particle and datapoint of ``pair``, shape ``(k, batch)``:
        log p(x | z) - KL(q || p) per latent site where the closed form applies, else
        log p(z) - log q(z | x); their mean over particles is :meth:`per_datapoint`."""
        return self.latent_terms(pair, sum(pair.log_p(name) for name in pair.observed))

    def latent_terms(self, pair: PairTrace, start: torch.Tensor | float = 0.0) -> torch.Tensor:
        """``start`` plus the latent part of :meth:`particle_terms`, shape ``(k, batch)``: minus
        KL(q || p) of every latent site where the closed form applies, else log p(z) - log q(z | x).
        Objectives that score x their own way add their terms as ``start``."""
        total = start
        for name in pair.latent:
            kl = pair.analytic_kl(name) if self.config.analytic_kl else None
            total = total - kl if kl is not None else total + pair.log_p(name) - pair.log_q(name)
        return total
