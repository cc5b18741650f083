"""The multi-stage VAE: a coarse image from transposed convolutions, sharpened by a residual network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.distributions import pixel_likelihood
from vaezoo.errors import ConfigError
from vaezoo.models.auxiliary import observe_x
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.nets import Activation, Refiner, upsampling_factor, vector_to_map
from vaezoo.registry import register_model


@dataclass(frozen=True)
class MultiStageVAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    z_dim: int = field(default=32, metadata={"help": "latent dimension", "min": 1})
    stages: int = field(
        default=2,
        metadata={
            "help": "2: coarse stage then refiner; 1: coarse stage only (reference VAE)",
            "min": 1,
            "max": 2,
        },
    )
    channels: tuple[int, ...] = field(
        default=(32, 64),
        metadata={
            "help": "channels of the first stage's transposed convolutions, from the image's resolution "
            "down (each entry doubles the side: the image side must be a multiple of 2^len)",
            "min": 1,
            "min_len": 1,
        },
    )
    refine_channels: int = field(default=32, metadata={"help": "channels of the second stage", "min": 1})
    refine_blocks: int = field(default=3, metadata={"help": "residual blocks in the second stage", "min": 0})
    activation: Activation = "relu"
    likelihood: Literal["laplace", "gaussian"] = field(
        default="laplace",
        metadata={"help": "likelihood of x at the last stage: laplace (l1) or gaussian (l2)"},
    )


@register_model("multistage_vae", MultiStageVAEConfig)
class MultiStageVAE(LatentVariableModel):
    """A VAE whose decoder draws a coarse image and then sharpens it.

    Generative story (the program :meth:`forward` writes)::

        z  ~ N(0, I_{z_dim})
        m1 = sigmoid(g(z))            g: linear map then transposed convolutions (stage 1, coarse)
        m2 = m1 + r(m1)               r: residual blocks with skip connections (stage 2, refiner)
        x  ~ Laplace(m2, b)           b a learned per-pixel scale (``likelihood="laplace"``)

    and, carried on the observed site as an auxiliary likelihood (not an observation of the model;
    :mod:`vaezoo.models.auxiliary`), the coarse stage's N(m1, diag sigma^2), sigma learned per pixel.
    ``likelihood="gaussian"`` observes x ~ N(m2, diag s^2) instead. ``stages=1`` drops the refiner
    and observes x under the likelihood at m1: the one-stage Gaussian (l2) and Laplace (l1)
    reference VAEs, with the same first stage and guide.

    **Which is which.** Cai, Gao & Ji (2017) train with the sum of the prior (KL) term, an l2 loss
    of the coarse image and an l1 loss of the refined one, both against the same x. That sum is the
    objective ``"multistage"`` (:class:`~vaezoo.inference.multistage.MultiStage`, weights
    configurable); it is not the ELBO of one generative model, because x is scored twice. The
    closest proper program is the one above, which observes x once, under the Laplace of the last
    stage (the l1 loss as a log-density); its ELBO (objective ``"elbo"``, and
    :meth:`MultiStage.bound`) is a lower bound on log p(x). Objective ``"stepwise"`` trains it with
    the paper's structure in likelihood form: log N(x; m1, sigma) + log Laplace(x; m2, b) - KL,
    a Gaussian then a Laplace observation of the same x (again not a bound).

    Deviations: the paper's encoder is convolutional; the default guide here is the MLP
    ``"amortized"`` encoder, the same for the one-stage references, so comparisons isolate the
    decoder. The refiner's last convolution starts at zero (stage 2 starts as the identity).
    Layer sizes are this implementation's, chosen for 28x28 MNIST, not the paper's.

    References:
        - Cai, Gao & Ji (2017), Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image
          Generation, arXiv:1705.07202.
    """

    def __init__(self, config: MultiStageVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if len(self.x_shape) != 3:
            raise ConfigError(
                f"multistage_vae needs image data (C, H, W), got x_shape {self.x_shape}; reshape the data"
            )
        upsampling_factor(self.x_shape, c.channels, "multistage_vae's first stage")
        self.coarse = vector_to_map(c.z_dim, c.channels, self.x_shape, c.activation)
        self.raw_scale = nn.Parameter(torch.zeros(self.x_shape))
        if c.stages == 2:
            self.refiner = Refiner(self.x_shape[0], c.refine_channels, c.refine_blocks, c.activation)
            self.raw_coarse_scale = nn.Parameter(torch.zeros(self.x_shape))

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.config.z_dim]).to_event(1)

    def stage_means(self, z: torch.Tensor) -> list[torch.Tensor]:
        """[m1] or [m1, m2] for latents ``z`` of shape ``(..., z_dim)``."""
        means = [torch.sigmoid(self.coarse(z))]
        if self.config.stages == 2:
            means.append(self.refiner(means[0]))
        return means

    def stage_dists(self, z: torch.Tensor) -> list[dist.Distribution]:
        """The distributions of x per stage: the coarse Gaussian (two stages) and the observed one, last."""
        means = self.stage_means(z)
        n = len(self.x_shape)
        observed = pixel_likelihood(self.config.likelihood, means[-1], self.raw_scale, n)
        if self.config.stages == 1:
            return [observed]
        return [pixel_likelihood("gaussian", means[0], self.raw_coarse_scale, n), observed]

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.z_dist(x))
            *auxiliary, observed = self.stage_dists(z)
            observe_x(x, observed, auxiliary)


__all__ = ["MultiStageVAE", "MultiStageVAEConfig"]
