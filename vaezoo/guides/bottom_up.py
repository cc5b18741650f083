"""Bottom-up hierarchical guide: each latent layer is inferred from x and the layers below it."""

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
from vaezoo.nets import Activation, cat_features, normal_head, per_layer, rung
from vaezoo.registry import register_guide
from vaezoo.sites import real_layers
from vaezoo.zoo_module import ZooModule


@dataclass(frozen=True)
class BottomUpConfig:
    hidden: tuple[int, ...] = field(
        default=(200,),
        metadata={"help": "MLP width per latent layer, bottom first (one value: all layers)", "min": 1},
    )
    mlp_layers: int = field(default=2, metadata={"help": "hidden layers in each layer's MLP", "min": 0})
    activation: Activation = "tanh"
    batch_norm: bool = field(default=False, metadata={"help": "batch norm in every hidden layer"})
    conditioning: Literal["markov", "all"] = field(
        default="markov",
        metadata={"help": "markov: q(z_l | z_{l-1}); all: q(z_l | x, z_1, ..., z_{l-1})"},
    )
    min_scale: float = field(
        default=1e-4, metadata={"help": "floor on posterior standard deviations", "min": 0}
    )


@register_guide("bottom_up", BottomUpConfig)
class BottomUpGuide(ZooModule):
    """q(z | x) = q(z_1 | x) prod_{l=2..L} q(z_l | c_l), each factor a diagonal Gaussian.

    The conditioning set is c_l = z_{l-1} (``conditioning="markov"``, the bottom-up chain of
    Zhao, Song & Ermon 2017) or c_l = [x; z_1; ...; z_{l-1}] (``"all"``, the structured
    hierarchical posterior of Rezende et al. 2014 and Burda et al. 2016, whose mean-field version
    would drop z). Each factor is an MLP (``mlp_layers`` layers of width ``hidden[l]``) followed by a
    linear head, sigma = softplus(.) + min_scale. Sites are sampled bottom-up, so ``z1`` first.

    Serves any model with real-valued latents; the layer order is the model's ``layer_sites``
    (bottom first), else the order of its sample sites. Event shapes other than vectors are
    flattened for the networks and restored for the sample sites.

    References:
        - Rezende, Mohamed & Wierstra (2014), Stochastic Backpropagation and Approximate Inference
          in Deep Generative Models, ICML.
        - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
        - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
    """

    def __init__(self, model, config: BottomUpConfig | dict | None = None, **overrides):
        super().__init__()
        c = self.config = resolve(BottomUpConfig, config, overrides)
        self.sites = real_layers(model, "bottom_up")
        self.x_shape = model.x_shape
        self.sizes = [math.prod(s.event_shape) for s in self.sites]
        widths = per_layer(c.hidden, len(self.sites), "hidden", "guide 'bottom_up'")
        self.nets = nn.ModuleList()
        for j, width in enumerate(widths):
            if c.conditioning == "markov":
                n_in = model.x_numel if j == 0 else self.sizes[j - 1]
            else:
                n_in = model.x_numel + sum(self.sizes[:j])
            self.nets.append(
                nn.Sequential(
                    rung(n_in, width, c.mlp_layers, c.activation, c.batch_norm),
                    nn.Linear(width, 2 * self.sizes[j]),
                )
            )

    def forward(self, x: torch.Tensor) -> None:
        check_shape(x, self.x_shape, type(self).__name__)
        below = [x.flatten(1)]
        with pyro.plate("data", x.shape[0]):
            for site, net in zip(self.sites, self.nets, strict=True):
                context = below[-1] if self.config.conditioning == "markov" else cat_features(below)
                loc, scale = normal_head(net(context), self.config.min_scale)
                shape = (*loc.shape[:-1], *site.event_shape)
                z = pyro.sample(
                    site.name,
                    dist.Normal(loc.reshape(shape), scale.reshape(shape)).to_event(len(site.event_shape)),
                )
                below.append(z.reshape(*z.shape[: z.dim() - len(site.event_shape)], -1))
