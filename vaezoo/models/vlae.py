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
from vaezoo.models.base import LatentVariableModel
from vaezoo.models.hvae import Activation, cat_features, per_layer, rung
from vaezoo.nets import activation
from vaezoo.registry import register_model


class Batched(nn.Module):
    """Apply ``net`` (which wants ``(N, *event)``) to a tensor with any number of leading dimensions."""

    def __init__(self, net: nn.Module, event_dims: int):
        super().__init__()
        self.net, self.event_dims = net, event_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - self.event_dims]
        y = self.net(x.reshape(-1, *x.shape[x.dim() - self.event_dims :]))
        return y.reshape(*lead, *y.shape[1:])


def conv_encoder(x_shape: tuple[int, ...], channels: tuple[int, ...], width: int, act: str) -> nn.Module:
    """x -> [4x4 stride-2 conv -> act] per entry of ``channels`` -> flatten -> Linear(width) -> act."""
    if len(x_shape) != 3:
        raise ConfigError(f"architecture 'conv' needs image data (C, H, W), got x_shape {x_shape}; use 'mlp'")
    layers: list[nn.Module] = []
    c_in = x_shape[0]
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), activation(act)]
        c_in = c_out
    body = nn.Sequential(*layers, nn.Flatten())
    with torch.no_grad():
        n_flat = body(torch.zeros(1, *x_shape)).shape[-1]
    return nn.Sequential(Batched(body, 3), nn.Linear(n_flat, width), activation(act))


class ConvDecoder(nn.Module):
    """h -> Linear -> (C_k, H/2^k, W/2^k) -> k 4x4 stride-2 transposed convs -> logits cropped to x."""

    def __init__(self, width: int, x_shape: tuple[int, ...], channels: tuple[int, ...], act: str):
        super().__init__()
        if len(x_shape) != 3:
            raise ConfigError(f"architecture 'conv' needs image data (C, H, W), got x_shape {x_shape}")
        self.x_shape = x_shape
        k = len(channels)
        self.start = (channels[-1], -(-x_shape[1] // 2**k), -(-x_shape[2] // 2**k))
        self.fc = nn.Sequential(
            nn.Linear(width, self.start[0] * self.start[1] * self.start[2]), activation(act)
        )
        layers: list[nn.Module] = []
        outs = [*reversed(channels[:-1]), x_shape[0]]
        c_in = channels[-1]
        for i, c_out in enumerate(outs):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(activation(act))
            c_in = c_out
        self.deconv = Batched(nn.Sequential(*layers), 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.deconv(self.fc(h).reshape(*h.shape[:-1], *self.start))
        return y[..., : self.x_shape[1], : self.x_shape[2]]


@dataclass(frozen=True)
class VLAEConfig:
    x_shape: tuple[int, ...] = field(
        default=(1, 28, 28),
        metadata={
            "cli": False,
            "help": "shape of one datapoint (set by the data set)",
            "min": 1,
            "min_len": 1,
        },
    )
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
