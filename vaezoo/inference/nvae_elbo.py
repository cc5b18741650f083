"""NVAE's training objective: the ELBO with KL warm-up, KL balancing and spectral regularization."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from vaezoo.errors import ConfigError
from vaezoo.inference.objective import Objective
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.nets import spectral_penalty
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class NVAEObjectiveConfig:
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    kl_warmup: float = field(
        default=3.0,
        metadata={
            "help": "epochs over which the KL weight rises linearly from 0 to 1 (paper: 0.3 of all epochs)",
            "min": 0,
        },
    )
    balance: bool = field(default=True, metadata={"help": "KL balancing across groups during warm-up"})
    balance_floor: float = field(
        default=0.01,
        metadata={
            "help": "nats added to each group's mean KL before balancing, so no weight is zero",
            "min": 0,
        },
    )
    spectral_lambda: float = field(
        default=0.01,
        metadata={"help": "weight of the spectral regularization (sum of spectral norms)", "min": 0},
    )
    power_iterations: int = field(
        default=1, metadata={"help": "power iterations per training step for the spectral norms", "min": 1}
    )
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


def group_kls(pair: PairTrace, analytic: bool = True) -> torch.Tensor:
    """KL(q || p) of every latent site (group), in the model's sampling order: shape ``(groups, k, batch)``.

    Closed form where :meth:`~vaezoo.inference.traces.PairTrace.analytic_kl` allows it (and
    ``analytic``), else the one-sample estimate log q(z | x) - log p(z).
    """
    kls = []
    for name in pair.latent:
        kl = pair.analytic_kl(name) if analytic else None
        kls.append(kl if kl is not None else pair.log_q(name) - pair.log_p(name))
    return torch.stack(kls)


def balance_coefficients(kls: torch.Tensor, sizes: torch.Tensor, floor: float = 0.01) -> torch.Tensor:
    """NVAE's KL-balancing coefficients gamma_l for ``kls`` of shape ``(groups, ...)``.

    gamma_l is proportional to the group's mean |KL| over the batch (and particles), plus ``floor``,
    divided by its size s_l (number of latent variables), and the gammas sum to the number of
    groups, so equal groups get weight 1 as in the plain ELBO (Vahdat & Kautz 2020, App. A). Groups
    that carry little information per variable get a small weight during warm-up, so the KL penalty
    does not shut them off before they are used. The coefficients carry no gradient.
    """
    per_size = (kls.detach().abs().flatten(1).mean(1) + floor) / sizes
    return per_size * (len(per_size) / per_size.sum())


@register_objective("nvae_elbo", NVAEObjectiveConfig)
class NVAEObjective(Objective):
    """NVAE's training loss: -[E_q log p(x | z) - beta_t sum_l gamma_l KL_l] + lambda sum_i sigma_i.

    - KL warm-up: beta_t = min(1, epochs / ``kl_warmup``), as :meth:`latent_weight`.
    - KL balancing (``balance``): while beta_t < 1, the group KLs KL_l are weighted by
      :func:`balance_coefficients` of the current batch; from the end of warm-up gamma_l = 1, the
      ELBO itself.
    - Spectral regularization: lambda = ``spectral_lambda`` times the sum of the largest singular
      values of the layers covered by every :class:`~vaezoo.nets.SpectralNorms` inside the model
      and the guide (:func:`~vaezoo.nets.spectral_penalty`); each training step (each differentiable
      loss computed with gradients on) takes ``power_iterations`` power iterations first. A pair
      without estimators is refused unless ``spectral_lambda`` is 0.

    :meth:`bound` is the plain ELBO (weight 1, no balancing, no penalty), so reported numbers are
    bounds on log p(x). The objective works with any model and guide: it reads the KL per latent
    site from the traces, and the spectral norms from the estimators the modules own.

    Departures from the paper's implementation: lambda is constant (the implementation can also
    anneal it during warm-up), the KL weight starts at 0 (the implementation keeps a small floor),
    and a group's size is its exact number of latent variables (the implementation uses a factor per
    scale).

    References:
        - Vahdat & Kautz (2020), NVAE: A Deep Hierarchical Variational Autoencoder, NeurIPS
          (Sec. 3.2 and Appendix A).
        - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    """

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        c = self.config
        pair = run_pair(model, guide, x, c.num_particles)
        recon = sum(pair.log_p(name) for name in pair.observed)
        kls = group_kls(pair, c.analytic_kl)
        if c.balance and latent_weight < 1:
            sizes = torch.tensor(
                [math.prod(pair.guide_sites[n]["fn"].event_shape) or 1 for n in pair.latent],
                dtype=kls.dtype,
                device=kls.device,
            )
            gamma = balance_coefficients(kls, sizes, c.balance_floor)
            kl = (gamma.reshape(-1, 1, 1) * kls).sum(0)
        else:
            kl = kls.sum(0)
        return (recon - latent_weight * kl).mean(0)

    def penalty(self, model, guide) -> torch.Tensor:
        """lambda sum_i sigma_i over the pair's estimators; the vectors move only when gradients are on,
        so :meth:`loss` (no gradients) reads the same estimate the last training step used."""
        c = self.config
        steps = c.power_iterations if torch.is_grad_enabled() else 0
        total = spectral_penalty(model, guide, steps=steps)
        if total is None:
            raise ConfigError(
                f"nvae_elbo has spectral_lambda={c.spectral_lambda}, but neither {type(model).__name__} "
                f"nor {type(guide).__name__} owns a spectral-norm estimator (vaezoo.nets.SpectralNorms); "
                "set spectral_lambda to 0 (--spectral-lambda 0) or use model 'nvae'"
            )
        return c.spectral_lambda * total

    def differentiable_loss(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> torch.Tensor:
        loss = -self.per_datapoint(model, guide, x, self.latent_weight(progress)).mean()
        if self.config.spectral_lambda > 0:
            loss = loss + self.penalty(model, guide)
        return loss

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        if self.config.spectral_lambda > 0:
            with torch.no_grad():
                self.penalty(model, guide)
