"""The VLAE inference network: one deterministic bottom-up ladder, a Gaussian read out at every rung."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.config import resolve
from vaezoo.models.base import check_shape
from vaezoo.nets import Activation, conv_encoder, normal_head, per_layer, rung
from vaezoo.registry import register_guide
from vaezoo.sites import real_layers
from vaezoo.zoo_module import ZooModule


@dataclass(frozen=True)
class LadderEncoderConfig:
    hidden: tuple[int, ...] = field(
        default=(256,),
        metadata={"help": "feature width h_l per layer, bottom first (one value: all layers)", "min": 1},
    )
    mlp_layers: int = field(default=2, metadata={"help": "hidden layers in each g_l MLP", "min": 0})
    architecture: Literal["mlp", "conv"] = field(
        default="mlp", metadata={"help": "g_1 as an MLP, or as stride-2 convolutions and a dense layer"}
    )
    conv_channels: tuple[int, ...] = field(
        default=(64, 128),
        metadata={"help": "channels of g_1's stride-2 convolutions (architecture conv)", "min": 1},
    )
    activation: Activation = "leaky_relu"
    batch_norm: bool = field(default=False, metadata={"help": "batch norm in every dense hidden layer"})
    min_scale: float = field(
        default=1e-4, metadata={"help": "floor on posterior standard deviations", "min": 0}
    )


@register_guide("vlae", LadderEncoderConfig)
class LadderEncoder(ZooModule):
    """q(z | x) = prod_l N(z_l; mu_l(h_l), diag sigma_l(h_l)^2),  h_l = g_l(h_{l-1}),  h_0 = x.

    The inference network of the variational ladder autoencoder: deeper latents read features
    computed by more layers, mirroring the generator that injects them deeper. Given x the layers
    are independent (mean field across layers), which suits the VLAE's independent prior. Sites are
    sampled bottom first. g_1 is an MLP or (``architecture="conv"``) 4x4 stride-2 convolutions
    followed by a dense layer; g_l for l > 1 are MLPs of width ``hidden[l]``.

    Serves any model with real-valued latents, in the order of the model's ``layer_sites`` (bottom
    first) or else of its sample sites.

    References:
        - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
    """

    def __init__(self, model, config: LadderEncoderConfig | dict | None = None, **overrides):
        super().__init__()
        c = self.config = resolve(LadderEncoderConfig, config, overrides)
        self.sites = real_layers(model, "vlae")
        self.x_shape = model.x_shape
        widths = per_layer(c.hidden, len(self.sites), "hidden", "guide 'vlae'")
        if c.architecture == "conv":
            first: nn.Module = conv_encoder(self.x_shape, tuple(c.conv_channels), widths[0], c.activation)
        else:
            first = rung(model.x_numel, widths[0], c.mlp_layers, c.activation, c.batch_norm)
        self.ladder = nn.ModuleList(
            [first]
            + [
                rung(widths[j - 1], widths[j], c.mlp_layers, c.activation, c.batch_norm)
                for j in range(1, len(widths))
            ]
        )
        self.heads = nn.ModuleList(
            nn.Linear(w, 2 * math.prod(s.event_shape)) for w, s in zip(widths, self.sites, strict=True)
        )

    def forward(self, x: torch.Tensor) -> None:
        check_shape(x, self.x_shape, type(self).__name__)
        h = x if self.config.architecture == "conv" else x.flatten(1)
        with pyro.plate("data", x.shape[0]):
            for site, g, head in zip(self.sites, self.ladder, self.heads, strict=True):
                h = g(h)
                loc, scale = normal_head(head(h), self.config.min_scale)
                shape = (*loc.shape[:-1], *site.event_shape)
                pyro.sample(
                    site.name,
                    dist.Normal(loc.reshape(shape), scale.reshape(shape)).to_event(len(site.event_shape)),
                )
