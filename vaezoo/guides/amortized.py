"""Amortized mean-field Normal guide: one encoder network maps x to a diagonal Gaussian per latent."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.config import resolve
from vaezoo.guides.factorized import FactorizedGuide
from vaezoo.models.base import check_shape
from vaezoo.nets import Activation, mlp
from vaezoo.registry import register_guide
from vaezoo.sites import require_real_latents


@dataclass(frozen=True)
class AmortizedNormalConfig:
    hidden: tuple[int, ...] = field(
        default=(200, 200), metadata={"help": "encoder hidden widths, from x up", "min": 1}
    )
    activation: Activation = "tanh"
    min_scale: float = field(
        default=1e-4, metadata={"help": "floor on posterior standard deviations", "min": 0}
    )


@register_guide("amortized", AmortizedNormalConfig)
class AmortizedNormal(FactorizedGuide):
    """q(z | x) = prod over latent sites s of N(z_s; mu_s(x), diag sigma_s(x)^2).

    A single MLP encoder reads the flattened x and outputs (mu, sigma) for every latent site of the
    model, which it discovers by tracing the model once, so the same guide serves any model whose
    latents are real-valued (a VAE, probabilistic PCA, or a hierarchy, where it is the fully
    factorized "FFG" family of Cremer et al. 2018). sigma = softplus(.) + min_scale.

    References:
        - Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR.
        - Rezende, Mohamed & Wierstra (2014), Stochastic Backpropagation and Approximate Inference
          in Deep Generative Models, ICML.
        - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML.
    """

    def __init__(self, model, config: AmortizedNormalConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = resolve(AmortizedNormalConfig, config, overrides)
        self.sites = require_real_latents(model, "amortized")
        self.x_shape = model.x_shape
        self.x_ndim = len(model.x_shape)
        self.sizes = [math.prod(s.event_shape) for s in self.sites]
        self.encoder = mlp((model.x_numel, *self.config.hidden), self.config.activation, final_act=True)
        width = self.config.hidden[-1] if self.config.hidden else model.x_numel
        self.head = nn.Linear(width, 2 * sum(self.sizes))

    def site_dists(self, x: torch.Tensor) -> dict[str, dist.Distribution]:
        check_shape(x, self.x_shape, type(self).__name__)
        out = self.head(self.encoder(x.flatten(-self.x_ndim)))
        loc, raw = out.chunk(2, dim=-1)
        scale = F.softplus(raw) + self.config.min_scale
        dists = {}
        for site, loc_s, scale_s in zip(
            self.sites, loc.split(self.sizes, -1), scale.split(self.sizes, -1), strict=True
        ):
            shape = (*x.shape[: -self.x_ndim], *site.event_shape)
            dists[site.name] = dist.Normal(loc_s.reshape(shape), scale_s.reshape(shape)).to_event(
                len(site.event_shape)
            )
        return dists
