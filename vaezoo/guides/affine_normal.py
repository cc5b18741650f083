"""A full-covariance Gaussian guide whose mean is affine in x: the family of linear-Gaussian posteriors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.factorized import FactorizedGuide
from vaezoo.models.base import check_shape
from vaezoo.registry import register_guide
from vaezoo.sites import LatentLayout


@dataclass(frozen=True)
class AffineNormalConfig:
    init_scale: float = field(
        default=1.0,
        metadata={"help": "initial standard deviation; the guide starts at N(0, init_scale^2 I)", "above": 0},
    )


@register_guide("affine_normal", AffineNormalConfig)
class AffineNormal(FactorizedGuide):
    """q(z_s | x) = N(A_s x + c_s, L_s L_s^T) for each latent site s (vector-valued), L_s lower triangular.

    The exact posterior of a linear-Gaussian model (probabilistic PCA, and the simulator
    :class:`~vaezoo.models.implicit.ImplicitGaussian` that is secretly one) has this form, with a
    covariance that does not depend on x; so a fit can reach it exactly and its error against the
    closed form measures the objective alone, not a gap of the family. It starts at A = 0, c = 0,
    L = ``init_scale`` I: with ``init_scale=1`` the untrained guide is the prior N(0, I).

    L_s has a softplus diagonal (positive) and free entries below it. Serves models whose latents
    are real vectors in the data plate only; other models raise :class:`~vaezoo.errors.ConfigError`.

    References:
        - Tipping & Bishop (1999), Probabilistic Principal Component Analysis, JRSS B (the posterior
          family).
        - Rezende, Mohamed & Wierstra (2014), Stochastic Backpropagation and Approximate Inference in
          Deep Generative Models, ICML (reparameterized full-covariance Gaussians).
    """

    def __init__(self, model, config: AffineNormalConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = resolve(AffineNormalConfig, config, overrides)
        layout = LatentLayout(model, "guide 'affine_normal'")
        shaped = [n for n, s in zip(layout.names, layout.event_shapes, strict=True) if len(s) != 1]
        if shaped:
            raise ConfigError(
                f"guide 'affine_normal' places one multivariate Normal on each latent vector, but sites "
                f"{shaped} of {type(model).__name__} are not vectors; use guide 'amortized' instead"
            )
        self.names, self.sizes = layout.names, layout.sizes
        self.x_shape = model.x_shape
        self.loc = nn.Linear(math.prod(self.x_shape), layout.dim)
        nn.init.zeros_(self.loc.weight)
        nn.init.zeros_(self.loc.bias)
        # softplus^{-1}(init_scale) on the diagonal, so that L starts at init_scale * I.
        s = torch.tensor(float(self.config.init_scale))
        diag = s + torch.log(-torch.expm1(-s))
        self.raw_tril = nn.ParameterList([nn.Parameter(torch.eye(d) * diag) for d in self.sizes])

    def scale_trils(self) -> list[torch.Tensor]:
        """L_s for each latent site, in the model's order."""
        out = []
        for raw in self.raw_tril:
            out.append(raw.tril(-1) + torch.diag_embed(F.softplus(raw.diagonal())))
        return out

    def site_dists(self, x: torch.Tensor) -> dict[str, dist.Distribution]:
        """The factors for a batch ``x`` of shape ``(*lead, *x_shape)`` (leading dims broadcast)."""
        n = len(self.x_shape)
        if x.dim() <= n or tuple(x.shape[-n:]) != self.x_shape:
            check_shape(x, self.x_shape, type(self).__name__)  # raises, naming the expected shape
        loc = self.loc(x.flatten(-len(self.x_shape)))
        parts = zip(self.names, loc.split(self.sizes, -1), self.scale_trils(), strict=True)
        return {name: dist.MultivariateNormal(part, scale_tril=tril) for name, part, tril in parts}
