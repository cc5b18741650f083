"""Probabilistic PCA: the linear-Gaussian latent-variable model, whose log p(x) and p(z|x) are exact."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.registry import register_model


@dataclass(frozen=True)
class LinearGaussianConfig:
    x_shape: tuple[int, ...] = x_shape_field((5,))
    z_dim: int = field(default=2, metadata={"help": "latent dimension", "min": 1})
    noise_scale: float = field(default=0.5, metadata={"help": "initial observation noise s", "above": 0})
    init_scale: float = field(
        default=1.0, metadata={"help": "scale of the random initial loading matrix W", "min": 0}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random initial W and b", "min": 0})


@register_model("linear_gaussian", LinearGaussianConfig)
class LinearGaussian(LatentVariableModel):
    """Probabilistic PCA, the ground truth every estimator is tested against.

    Generative story (x flattened to D = prod(x_shape) dimensions)::

        z ~ N(0, I_d)
        x ~ N(W z + b, s^2 I_D)

    Marginal and posterior are Gaussian and closed-form::

        x ~ N(b, W W^T + s^2 I)
        z | x ~ N(S W^T (x - b) / s^2, S),    S = (I + W^T W / s^2)^{-1}

    so :meth:`log_marginal` and :meth:`posterior` are exact, and the guide ``"exact"`` samples
    the true posterior (for which every importance weight equals p(x)).

    References:
        - Tipping & Bishop (1999), Probabilistic Principal Component Analysis, JRSS B.
        - Roweis (1998), EM Algorithms for PCA and SPCA, NIPS.
    """

    default_guide_name = "amortized"

    def __init__(self, config: LinearGaussianConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        config = self.config
        g = torch.Generator().manual_seed(config.seed)
        d, D = config.z_dim, self.x_numel
        self.z_dim = d
        self.W = nn.Parameter(config.init_scale * torch.randn(D, d, generator=g) / d**0.5)
        self.b = nn.Parameter(torch.randn(D, generator=g))
        # softplus^{-1}(s), so that the initial noise is exactly noise_scale.
        s = torch.tensor(float(config.noise_scale))
        self.raw_noise = nn.Parameter(s + torch.log(-torch.expm1(-s)))

    @property
    def noise(self) -> torch.Tensor:
        return F.softplus(self.raw_noise)

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.z_dim]).to_event(1)

    def x_dist(self, z: torch.Tensor) -> dist.Distribution:
        loc = (z @ self.W.T + self.b).reshape(*z.shape[:-1], *self.x_shape)
        return dist.Normal(loc, self.noise).to_event(len(self.x_shape))

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.z_dist(x))
            pyro.sample("x", self.x_dist(z), obs=x)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per datapoint, shape ``(batch,)``."""
        W, s2 = self.W, self.noise**2
        cov = W @ W.T + s2 * torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x.flatten(1))

    def posterior(self, x: torch.Tensor) -> dict[str, dist.Distribution]:
        """Exact p(z | x) for each latent site, batched over ``x``."""
        W, s2 = self.W, self.noise**2
        prec = torch.eye(self.z_dim, dtype=W.dtype, device=W.device) + W.T @ W / s2
        cov = torch.linalg.inv(prec)
        loc = (x.flatten(1) - self.b) @ W @ cov.T / s2
        return {"z": dist.MultivariateNormal(loc, covariance_matrix=cov)}
