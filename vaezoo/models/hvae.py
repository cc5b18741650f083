"""Hierarchical VAEs with top-down generative models.

Layers are numbered from the data up: site ``"z1"`` is next to x, ``"zL"`` is the top. Every model
here exposes ``layer_sites`` (those names, bottom first), which guides and
:mod:`vaezoo.analysis.diagnostics` read instead of guessing, and ``prior_loc_scale(j, upper)``,
the conditional prior of layer ``j`` (0-based) that the Ladder VAE guide shares with its model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.distributions import bernoulli
from vaezoo.errors import ConfigError
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.models.prior_handoff import PriorHandoff
from vaezoo.nets import Activation, cat_features, normal_head, per_layer, rung
from vaezoo.registry import register_model


@dataclass(frozen=True)
class HVAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    z_dims: tuple[int, ...] = field(
        default=(100, 50),
        metadata={"help": "latent sizes per layer, bottom (next to x) first", "min": 1, "min_len": 1},
    )
    hidden: tuple[int, ...] = field(
        default=(200, 100),
        metadata={
            "help": "width of each rung's MLP, bottom first (rung l links layer l-1, or x, to l)",
            "min": 1,
        },
    )
    mlp_layers: int = field(default=2, metadata={"help": "hidden layers in each rung's MLP", "min": 0})
    activation: Activation = "tanh"
    batch_norm: bool = field(default=False, metadata={"help": "batch norm in every hidden layer"})
    min_scale: float = field(default=1e-4, metadata={"help": "floor on prior standard deviations", "min": 0})


class TopDownHierarchy(LatentVariableModel):
    """z_L ~ N(0, I); z_l ~ N(mu_l(c_l), diag sigma_l(c_l)^2) for l = L-1..1; x ~ Bernoulli(f(c_0)).

    Subclasses choose the conditioning set c_l through :attr:`markov`: all higher layers
    concatenated (c_l = [z_{l+1}; ...; z_L], c_0 = [z_1; ...; z_L]) or the next layer only
    (c_l = z_{l+1}, c_0 = z_1). With layers numbered from 1 and ``hidden`` indexed from 0, mu_l and
    sigma_l come from an MLP of width ``hidden[l]`` (the rung between layers l and l+1) and the
    decoder f from one of width ``hidden[0]`` (the rung between x and z_1); sigma = softplus(.) +
    min_scale. The model samples top-down: ``zL`` first.
    """

    markov = False
    binary_data = True
    default_guide_name = "bottom_up"

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if not c.z_dims or min(c.z_dims) < 1:
            raise ConfigError(f"z_dims must be a non-empty tuple of positive sizes, got {c.z_dims}")
        self.z_dims = tuple(c.z_dims)
        self.num_layers = len(self.z_dims)
        self.widths = per_layer(c.hidden, self.num_layers, "hidden", type(self).__name__)
        self.layer_sites = tuple(f"z{j + 1}" for j in range(self.num_layers))
        # A plain attribute (not a module or buffer): per-run scratch space, outside state_dict.
        self._prior_handoff = PriorHandoff()
        self.top_down = nn.ModuleList()
        for j in range(self.num_layers - 1):
            n_in = self.z_dims[j + 1] if self.markov else sum(self.z_dims[j + 1 :])
            self.top_down.append(
                nn.Sequential(
                    rung(n_in, self.widths[j + 1], c.mlp_layers, c.activation, c.batch_norm),
                    nn.Linear(self.widths[j + 1], 2 * self.z_dims[j]),
                )
            )
        n_in = self.z_dims[0] if self.markov else sum(self.z_dims)
        self.decoder = nn.Sequential(
            rung(n_in, self.widths[0], c.mlp_layers, c.activation, c.batch_norm),
            nn.Linear(self.widths[0], self.x_numel),
        )

    def default_guide_config(self) -> dict:
        c = self.config
        return {
            "hidden": list(self.widths),
            "mlp_layers": c.mlp_layers,
            "activation": c.activation,
            "batch_norm": c.batch_norm,
            "conditioning": "markov" if self.markov else "all",
        }

    def _context(self, upper: Sequence[torch.Tensor]) -> torch.Tensor:
        """A network's input from the layers above it, ``upper`` = [z_{j+1}, ..., z_L] (nearest first)."""
        return upper[0] if self.markov else cat_features(upper)

    def prior_loc_scale(self, j: int, upper: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of p(z_j | higher layers), 0-based ``j < L - 1``; ``upper`` = [z_{j+1}, ...].

        A guide that needs the prior (the Ladder VAE's) calls this; the result is also kept for the
        model's replay on the same tensors (:class:`~vaezoo.models.prior_handoff.PriorHandoff`).
        """
        net = self.top_down[j]
        out = normal_head(net(self._context(upper)), self.config.min_scale)
        self._prior_handoff.put(j, upper, net, out)
        return out

    def z_dist(
        self, j: int, upper: Sequence[torch.Tensor], n: int, like: torch.Tensor, top_down: nn.ModuleList
    ) -> dist.Distribution:
        if j == self.num_layers - 1:
            return dist.Normal(like.new_zeros(()), 1.0).expand([n, self.z_dims[j]]).to_event(1)
        net = top_down[j]
        loc_scale = self._prior_handoff.take(j, upper, net)
        if loc_scale is None:
            loc_scale = normal_head(net(self._context(upper)), self.config.min_scale)
        return dist.Normal(*loc_scale).to_event(1)

    def x_dist(self, zs: Sequence[torch.Tensor]) -> dist.Distribution:
        """p(x | z) from ``zs`` = [z_1, ..., z_L]."""
        logits = self.decoder(self._context(zs))
        return bernoulli(logits.reshape(*logits.shape[:-1], *self.x_shape), len(self.x_shape))

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        # Read once: under Pyro's SVI every read of a submodule announces all of its parameters.
        top_down = self.top_down
        upper: list[torch.Tensor] = []
        with pyro.plate("data", x.shape[0]):
            for j in reversed(range(self.num_layers)):
                z = pyro.sample(self.layer_sites[j], self.z_dist(j, upper, x.shape[0], x, top_down))
                upper.insert(0, z)
            pyro.sample("x", self.x_dist(upper), obs=x)


@register_model("hvae", HVAEConfig)
class HVAE(TopDownHierarchy):
    """A deep latent Gaussian model in which every layer depends on all the layers above it.

    Generative story (layers numbered from the data up, ``L = len(z_dims)``)::

        z_L ~ N(0, I)
        z_l ~ N(mu_l([z_{l+1}; ...; z_L]), diag sigma_l(.)^2)     l = L-1, ..., 1
        x   ~ Bernoulli(logits = f([z_1; ...; z_L]))

    Each mu_l, sigma_l and f is an MLP (``mlp_layers`` hidden layers of width ``hidden[l]``).
    The default guide is the bottom-up ``"bottom_up"`` guide q(z_1 | x) prod_l q(z_l | x, z_{<l}).
    With the defaults (z_dims (100, 50), rungs of two layers of 200 and 100 tanh units) the layer
    sizes are those of the two-stochastic-layer model of Burda et al. (2016).

    Deviation: Kingma et al. (2016) build the top-down path from ResNet blocks and pair it with a
    bidirectional inference network; we use concatenated inputs to plain MLPs, which gives the same
    conditional dependence structure with fewer parts. Only a Bernoulli likelihood is offered.

    References:
        - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational
          Inference with Inverse Autoregressive Flow, NIPS.
        - Rezende, Mohamed & Wierstra (2014), Stochastic Backpropagation and Approximate Inference
          in Deep Generative Models, ICML.
        - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
    """

    markov = False


__all__ = ["HVAE", "HVAEConfig", "TopDownHierarchy"]
