"""The inverse autoregressive flow guide of Kingma et al. (2016), Algorithm 1."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.config import resolve
from vaezoo.guides.flow_base import FlowEncoderConfig, FlowGuide
from vaezoo.nets import Activation
from vaezoo.nets.made import MADE
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class IAFConfig(FlowEncoderConfig):
    steps: int = field(default=2, metadata={"help": "IAF steps T, each an autoregressive network", "min": 1})
    context: int = field(
        default=20, metadata={"help": "size of the context h the encoder gives every step", "min": 0,
                              "zero": "no context"}
    )
    made_hidden: tuple[int, ...] = field(
        default=(100, 100), metadata={"help": "hidden widths of each step's MADE", "min": 1, "min_len": 1}
    )
    made_activation: Activation = "elu"
    gate_bias: float = field(
        default=2.0,
        metadata={"help": "initial bias of the gate logits s, so sigma = sigmoid(s) starts near 1", "min": 0},
    )


def iaf_step(made: MADE, z: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sigma * z + (1 - sigma) * m, sum log sigma)`` with ``[m, s] = made(z, h)``, sigma = sigmoid(s)."""
    m, s = made(z, h)
    gate = torch.sigmoid(s)
    return gate * z + (1 - gate) * m, F.logsigmoid(s).sum(-1)


@register_guide("iaf", IAFConfig)
class IAFGuide(FlowGuide):
    """q(z | x): a diagonal Gaussian given x pushed through T inverse autoregressive steps with context h(x).

    Sampling, as Algorithm 1 of Kingma et al. (2016) (z is the model's latent sites concatenated)::

        [mu, sigma, h] = encoder(x)
        z = mu + sigma * eps,  eps ~ N(0, I);   l = log N(z; mu, sigma^2)
        for t = 1..T:
            [m, s] = MADE_t(z, h);   g = sigmoid(s)
            z = g * z + (1 - g) * m;   l = l - sum log g
        log q(z | x) = l

    Each MADE_t is autoregressive in its own variable order: output i sees the coordinates before i
    and the whole context (:class:`~vaezoo.nets.made.MADE`), so step t has a triangular Jacobian
    with diagonal g and log-determinant sum log g. The order is reversed between steps. The gate
    logits start at ``gate_bias`` (+2, in the paper +1 or +2), so each step starts close to the
    identity.

    The guide scores its own draws only (:mod:`~vaezoo.guides.flow_base`), like the planar and
    Sylvester guides; pathwise, score-function and DReG gradients work.

    Deviations from the paper: the MADEs are fully connected (the paper's MNIST IAF used
    convolutional ones inside a ResNet VAE); the flow acts on all latent sites of the model jointly.

    References:
        - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational
          Inference with Inverse Autoregressive Flow, NIPS.
        - Germain, Gregor, Murray & Larochelle (2015), MADE: Masked Autoencoder for Distribution
          Estimation, ICML.
    """

    def __init__(self, model, config: IAFConfig | dict | None = None, **overrides):
        super().__init__(model, resolve(IAFConfig, config, overrides))
        c, d = self.config, self.dim
        natural = list(range(d))
        self.mades = nn.ModuleList(
            MADE(d, c.context, c.made_hidden, natural if t % 2 == 0 else natural[::-1], 2, c.made_activation)
            for t in range(c.steps)
        )
        with torch.no_grad():
            for made in self.mades:
                made.out.bias[d:].fill_(c.gate_bias)

    def cond_size(self) -> int:
        return self.config.context

    def transform(self, z0: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = cond if self.config.context else None
        z, log_det = z0, z0.new_zeros(())
        for made in self.mades:
            z, step = iaf_step(made, z, h)
            log_det = log_det + step
        return z, log_det


__all__ = ["IAFConfig", "IAFGuide", "iaf_step"]
