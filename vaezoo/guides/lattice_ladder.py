"""Ladder inference for continuous block-spin latents: bottom-up estimates merged with the top-down priors."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.block_spin import BlockAmortizedConfig, bottom_up_rungs, require_block_spin
from vaezoo.guides.bound import BoundGuide
from vaezoo.guides.ladder import precision_weighted
from vaezoo.registry import register_guide

#: The sizes of the ladder's bottom-up rungs are those of the block-spin encoders.
LatticeLadderConfig = BlockAmortizedConfig


@register_guide("block_ladder", LatticeLadderConfig)
class LatticeLadderGuide(BoundGuide):
    """The Ladder VAE's inference network on lattice latents: q(z | s) sampled top-down like the model.

    Deterministic bottom-up pass over the spins (d_0 = s, one :class:`~vaezoo.nets.OddBottomUp` rung
    per level, each halving the side)::

        (d_l, mu_hat_l, sigma_hat_l) = rung_l(d_{l-1}, K)

    Stochastic top-down pass, merging each estimate with the model's own conditional prior
    p(z_l | z_{l+1}, K) = N(mu_p,l, sigma_p,l^2) (the block-spin model's Gaussian decoders, shared,
    as in the paper)::

        q(z_n | s)            = N(mu_hat_n, sigma_hat_n^2)
        q(z_l | z_{l+1}, s)   = N(precision_weighted(mu_hat_l, sigma_hat_l, mu_p,l(z_{l+1}), sigma_p,l))

    With the block-spin model and ``latent="continuous"`` this makes the Ladder VAE of lattice
    latents; the same model with the bottom-up Markov guide ``"block_amortized"`` is the Markov HVAE.
    The model's decoders are read, not owned (:class:`~vaezoo.guides.bound.BoundGuide`), so training
    optimizes both modules' parameters and their gradients also flow through this guide.

    Deviations from the paper: no batch norm (its running means would break the Z2 oddness that the
    lattice networks keep by construction) and odd convolutions with K-gains in place of MLPs; KL
    warm-up, if wanted, is the objective's job.

    References:
        - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    """

    def __init__(self, model, config: LatticeLadderConfig | dict | None = None, **overrides):
        super().__init__(require_block_spin(model, "block_ladder"))
        c = self.config = resolve(LatticeLadderConfig, config, overrides)
        if model.binary:
            raise ConfigError(
                "guide 'block_ladder' merges Gaussian estimates with the model's Gaussian priors, which "
                "needs latent='continuous'; this model has binary block spins: use guide "
                "'block_amortized' or 'block_rg'"
            )
        self.sites = model.layer_sites
        self.rungs = bottom_up_rungs(c, len(self.sites))

    def bottom_up_estimates(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mu_hat_l, sigma_hat_l) of every level, finest first."""
        K, d = x[:, 1, 0, 0], x[:, :1]
        out = []
        for rung in self.rungs:
            d, mu, sigma = rung(d, K)
            out.append((mu, sigma))
        return out

    def forward(self, x: torch.Tensor) -> None:
        self.model.check_x(x)
        K = x[:, 1, 0, 0]
        estimates = self.bottom_up_estimates(x)
        top = len(estimates) - 1
        z = None
        with pyro.plate("data", x.shape[0]):
            for j in range(top, -1, -1):  # site z_{j+1}, coarsest first
                loc, scale = estimates[j]
                if j < top:
                    prior = self.model.level_dist(j + 1, z, K).base_dist
                    loc, scale = precision_weighted(loc, scale, prior.loc, prior.scale)
                z = pyro.sample(self.sites[j], dist.Normal(loc, scale).to_event(2))
