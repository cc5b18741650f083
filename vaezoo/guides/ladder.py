"""The Ladder VAE inference network: a bottom-up pass merged with the model's own top-down pass."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.models.base import check_shape
from vaezoo.nets import Activation, normal_head, per_layer, rung
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class LadderGuideConfig:
    hidden: tuple[int, ...] = field(
        default=(),
        metadata={
            "help": "bottom-up MLP width per layer, bottom first (one value: all; empty: the model's)",
            "min": 1,
        },
    )
    mlp_layers: int = field(default=2, metadata={"help": "hidden layers in each bottom-up MLP", "min": 0})
    activation: Activation = "leaky_relu"
    batch_norm: bool = field(default=True, metadata={"help": "batch norm in every bottom-up hidden layer"})
    min_scale: float = field(
        default=1e-4, metadata={"help": "floor on the bottom-up standard deviations", "min": 0}
    )


def precision_weighted(
    mu_hat: torch.Tensor, sigma_hat: torch.Tensor, mu_p: torch.Tensor, sigma_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian proportional to N(mu_hat, sigma_hat^2) N(mu_p, sigma_p^2), as (mu_q, sigma_q).

    sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2),  mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma_q^2
    (Sønderby et al. 2016, eqs. 18-19). Inputs broadcast against each other.
    """
    prec_hat, prec_p = sigma_hat.pow(-2), sigma_p.pow(-2)
    var = 1.0 / (prec_hat + prec_p)
    return (mu_hat * prec_hat + mu_p * prec_p) * var, var.sqrt()


@register_guide("ladder", LadderGuideConfig)
class LadderGuide(BoundGuide):
    """q(z | x) = q(z_L | x) prod_{l<L} q(z_l | z_{l+1}, x), sampled top-down like the model.

    Deterministic bottom-up pass (d_0 = x)::

        d_l = MLP_l(d_{l-1}),   mu_hat_l = Linear(d_l),   sigma_hat_l = softplus(Linear(d_l))

    Stochastic top-down pass::

        q(z_L | x)            = N(mu_hat_L, sigma_hat_L^2)
        q(z_l | z_{l+1}, x)   = N(mu_q,l, sigma_q,l^2),   (mu_q,l, sigma_q,l) = precision_weighted(
                                    mu_hat_l, sigma_hat_l, mu_p,l(z_{l+1}), sigma_p,l(z_{l+1}))

    where (mu_p,l, sigma_p,l) is the model's own conditional prior, computed by calling
    ``model.prior_loc_scale``: the top-down networks are *shared* between generative model and
    inference network, as in the paper. Ownership is explicit: the model owns them (they are in the
    model's ``state_dict`` and ``parameters()``); the guide is a
    :class:`~vaezoo.guides.bound.BoundGuide`: it reads the model (:attr:`model`) without owning it, so
    its ``state_dict`` holds only the bottom-up networks and a checkpoint restores each parameter
    exactly once. Training must therefore optimize the union of both modules' parameters
    (:func:`vaezoo.inference.fit.parameters` does, without duplicates),
    and eval mode must be set on both (:func:`vaezoo.nets.evaluating` takes both), because the
    shared batch-norm layers follow the model's mode.

    Everything still goes through Pyro sample sites, so ELBO, IWAE, importance sampling and
    score-function estimators use this guide like any other. It serves any model that exposes
    ``layer_sites``, ``z_dims``, ``widths`` and ``prior_loc_scale`` (the top-down hierarchies in
    :mod:`vaezoo.models.hvae`); with a non-Markov prior the merge uses p(z_l | z_{l+1}, ..., z_L).
    By default (empty ``hidden``) the bottom-up widths mirror the model's rung widths, as in the paper.

    Deviation: the paper parameterizes variances with softplus; we do so for standard deviations.

    References:
        - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    """

    def __init__(self, model, config: LadderGuideConfig | dict | None = None, **overrides):
        super().__init__(model)
        c = self.config = resolve(LadderGuideConfig, config, overrides)
        if not all(hasattr(model, a) for a in ("layer_sites", "z_dims", "widths", "prior_loc_scale")):
            raise ConfigError(
                f"guide 'ladder' shares the model's top-down networks, which {type(model).__name__} does "
                "not have (it needs layer_sites, z_dims, widths and prior_loc_scale, as models 'lvae', "
                "'markov_hvae' and 'hvae' provide); use that model's default_guide() instead"
            )
        self.x_shape = model.x_shape
        self.layer_sites = tuple(model.layer_sites)
        z_dims = tuple(model.z_dims)
        widths = per_layer(c.hidden or model.widths, len(z_dims), "hidden", "guide 'ladder'")
        sizes = [model.x_numel, *widths]
        self.bottom_up = nn.ModuleList(
            rung(sizes[j], sizes[j + 1], c.mlp_layers, c.activation, c.batch_norm) for j in range(len(z_dims))
        )
        self.heads = nn.ModuleList(nn.Linear(w, 2 * d) for w, d in zip(widths, z_dims, strict=True))

    @property
    def top_down(self) -> nn.ModuleList:
        """The shared top-down networks: the model's own modules, not copies."""
        return self.model.top_down

    def bottom_up_estimates(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mu_hat_l, sigma_hat_l) for every layer, bottom first."""
        d = x.flatten(-len(self.x_shape))
        out = []
        for net, head in zip(self.bottom_up, self.heads, strict=True):
            d = net(d)
            out.append(normal_head(head(d), self.config.min_scale))
        return out

    def forward(self, x: torch.Tensor) -> None:
        check_shape(x, self.x_shape, type(self).__name__)
        model = self.model
        estimates = self.bottom_up_estimates(x)
        top = len(estimates) - 1
        upper: list[torch.Tensor] = []
        with pyro.plate("data", x.shape[0]):
            for j in reversed(range(len(estimates))):
                loc, scale = estimates[j]
                if j < top:
                    loc, scale = precision_weighted(loc, scale, *model.prior_loc_scale(j, upper))
                upper.insert(0, pyro.sample(self.layer_sites[j], dist.Normal(loc, scale).to_event(1)))
