"""The variational ladder autoencoder (Zhao, Song & Ermon 2017): independent latents injected at depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.distributions import bernoulli
from vaezoo.errors import ConfigError
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.nets import Activation, ConvDecoder, cat_features, per_layer, rung
from vaezoo.registry import register_model


@dataclass(frozen=True)
class VLAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    z_dims: tuple[int, ...] = field(
        default=(2, 2, 2),
        metadata={"help": "latent sizes per layer, bottom (shallowest) first", "min": 1, "min_len": 1},
    )
    hidden: tuple[int, ...] = field(
        default=(256, 256, 256), metadata={"help": "feature width at each depth, bottom first", "min": 1}
    )
    mlp_layers: int = field(default=2, metadata={"help": "hidden layers in each u_l and g_l MLP", "min": 0})
    architecture: Literal["mlp", "conv"] = field(
        default="mlp", metadata={"help": "mlp: small, for CPU; conv: the paper's convolutional MNIST nets"}
    )
    conv_channels: tuple[int, ...] = field(
        default=(64, 128),
        metadata={"help": "channels of the stride-2 convolutions (architecture conv)", "min": 1},
    )
    activation: Activation = "leaky_relu"
    batch_norm: bool = field(default=False, metadata={"help": "batch norm in every dense hidden layer"})


@register_model("vlae", VLAEConfig)
class VLAE(LatentVariableModel):
    """Independent standard-normal latents, each injected at its own depth of one deep generator.

    Generative story (layers numbered from the data up, ``L = len(z_dims)``)::

        z_l ~ N(0, I)                                   l = 1, ..., L, independently
        zhat_L = u_L(z_L)
        zhat_l = u_l([zhat_{l+1}; v_l(z_l)])            l = L-1, ..., 1
        x ~ Bernoulli(logits = f(zhat_1))

    u_l are MLPs of width ``hidden[l]``, v_l one dense layer, f a linear map (``architecture="mlp"``)
    or a dense layer and stride-2 transposed convolutions (``"conv"``). Deeper latents pass through
    more nonlinear layers, so they come to encode more abstract factors, without the bottom layer
    making the others redundant as in a Markov hierarchy. The default guide ``"vlae"`` mirrors the
    generator: q(z_l | h_l) with h_l = g_l(h_{l-1}), h_0 = x.

    Paper MNIST setting: ``architecture="conv", z_dims=(2, 2, 2), hidden=(1024, 1024, 1024)``
    (convolutions of 64 and 128 channels). Deviations: the paper's experiments weight the
    reconstruction term and use a gated sum in place of concatenation; we keep the plain
    concatenation of the paper's equations and a Bernoulli likelihood, so the ELBO is a bound on
    log p(x). Batch norm is off by default (optional for the dense layers).

    References:
        - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
    """

    binary_data = True
    default_guide_name = "vlae"

    def __init__(self, config: VLAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if not c.z_dims or min(c.z_dims) < 1:
            raise ConfigError(f"z_dims must be a non-empty tuple of positive sizes, got {c.z_dims}")
        self.z_dims = tuple(c.z_dims)
        L = self.num_layers = len(self.z_dims)
        self.widths = per_layer(c.hidden, L, "hidden", "VLAE")
        self.layer_sites = tuple(f"z{j + 1}" for j in range(L))
        w, act, bn = self.widths, c.activation, c.batch_norm
        self.inject = nn.ModuleList(rung(self.z_dims[j], w[j], 1, act, bn) for j in range(L - 1))
        self.up = nn.ModuleList(
            rung((w[j + 1] + w[j]) if j < L - 1 else self.z_dims[j], w[j], c.mlp_layers, act, bn)
            for j in range(L)
        )
        if c.architecture == "conv":
            self.out = ConvDecoder(w[0], self.x_shape, tuple(c.conv_channels), act)
        else:
            self.out = nn.Linear(w[0], self.x_numel)

    def default_guide_config(self) -> dict:
        c = self.config
        keys = ("mlp_layers", "architecture", "conv_channels", "activation", "batch_norm")
        return {"hidden": list(self.widths), **{k: getattr(c, k) for k in keys}}

    def z_dist(self, j: int, x: torch.Tensor) -> dist.Distribution:
        return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.z_dims[j]]).to_event(1)

    def x_dist(self, zs: list[torch.Tensor]) -> dist.Distribution:
        """p(x | z_1, ..., z_L) from ``zs`` bottom first."""
        h = self.up[-1](zs[-1])
        for j in reversed(range(self.num_layers - 1)):
            h = self.up[j](cat_features([h, self.inject[j](zs[j])]))
        logits = self.out(h).reshape(*h.shape[:-1], *self.x_shape)
        return bernoulli(logits, len(self.x_shape))

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            zs = [pyro.sample(site, self.z_dist(j, x)) for j, site in enumerate(self.layer_sites)]
            pyro.sample("x", self.x_dist(zs), obs=x)
