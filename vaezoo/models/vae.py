"""The variational autoencoder's generative model (Kingma & Welling 2014), with an MLP decoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.distributions import pixel_likelihood
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.nets import Activation, mlp
from vaezoo.registry import register_model


@dataclass(frozen=True)
class VAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    z_dim: int = field(default=50, metadata={"help": "latent dimension", "min": 1})
    hidden: tuple[int, ...] = field(
        default=(200, 200), metadata={"help": "decoder hidden widths, from z up", "min": 1}
    )
    activation: Activation = "tanh"
    likelihood: Literal["bernoulli", "gaussian", "laplace"] = field(
        default="bernoulli",
        metadata={"help": "bernoulli for binary data; gaussian (l2) or laplace (l1) for real-valued"},
    )


@register_model("vae", VAEConfig)
class VAE(LatentVariableModel):
    """One stochastic layer: a standard-normal latent decoded by an MLP.

    Generative story::

        z ~ N(0, I_{z_dim})
        x ~ Bernoulli(logits = f(z))           likelihood="bernoulli"
        x ~ N(f(z), diag(sigma^2))             likelihood="gaussian", sigma a learned per-pixel scale
        x ~ Laplace(f(z), b)                   likelihood="laplace", b a learned per-pixel scale

    with f an MLP ``z_dim -> hidden... -> prod(x_shape)``. With the defaults (two layers of 200 tanh
    units, z_dim=50) it is the one-stochastic-layer architecture of Burda et al. (2016).

    Deviation: Kingma & Welling's Gaussian decoder also outputs its variance; we learn one scale per
    pixel instead, which avoids the variance collapse of per-input variances on images.

    References:
        - Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR.
        - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
    """

    def __init__(self, config: VAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        config = self.config
        self.z_dim = config.z_dim
        self.decoder = mlp((config.z_dim, *config.hidden, self.x_numel), config.activation)
        if config.likelihood != "bernoulli":
            self.raw_scale = nn.Parameter(torch.zeros(self.x_shape))

    def default_guide_config(self) -> dict:
        # The mirrored encoder of Burda et al.: the decoder's hidden widths in reverse.
        return {"hidden": list(reversed(self.config.hidden)), "activation": self.config.activation}

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.z_dim]).to_event(1)

    def x_dist(self, z: torch.Tensor) -> dist.Distribution:
        out = self.decoder(z).reshape(*z.shape[:-1], *self.x_shape)
        scale = getattr(self, "raw_scale", None)
        return pixel_likelihood(self.config.likelihood, out, scale, len(self.x_shape))

    @property
    def binary_data(self) -> bool:
        return self.config.likelihood == "bernoulli"

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.z_dist(x))
            pyro.sample("x", self.x_dist(z), obs=x)
