"""The lattice VLAE's guide: one Gaussian per latent level, read off a deterministic bottom-up pass."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.block_spin import BlockAmortizedConfig, bottom_up_rungs
from vaezoo.registry import register_guide
from vaezoo.zoo_module import ZooModule

#: The sizes of the bottom-up rungs are those of the block-spin encoders.
IsingVLAEGuideConfig = BlockAmortizedConfig


@register_guide("ising_vlae", IsingVLAEGuideConfig)
class IsingVLAEGuide(ZooModule):
    """q(z | s, K) = prod_l N(z_l; mu_l(h_l), sigma_l(h_l)^2), with h_l = rung_l(h_{l-1}) and h_0 = s.

    The VLAE paper's inference network on the lattice: a deterministic bottom-up pass of
    :class:`~vaezoo.nets.OddBottomUp` rungs (each halves the side), each level's latent read off its
    own depth, the levels conditionally independent given s. Odd means and even scales give
    q(-z | -s) = q(z | s), mirroring the model's symmetry; reparameterized, so the plain ELBO trains it.

    References:
        - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
    """

    def __init__(self, model, config: IsingVLAEGuideConfig | dict | None = None, **overrides):
        super().__init__()
        c = self.config = resolve(IsingVLAEGuideConfig, config, overrides)
        if not getattr(model, "independent_levels", False) or not hasattr(model, "layer_sites"):
            raise ConfigError(
                f"guide 'ising_vlae' infers the independent latent lattices of model 'ising_vlae', not "
                f"{type(model).__name__}; use that model's default_guide() instead"
            )
        self.sites = model.layer_sites
        self.rungs = bottom_up_rungs(c, len(self.sites))

    def forward(self, x: torch.Tensor) -> None:
        K, h = x[:, 1, 0, 0], x[:, :1]
        with pyro.plate("data", x.shape[0]):
            for site, rung in zip(self.sites, self.rungs, strict=True):
                h, mu, sigma = rung(h, K)
                pyro.sample(site, dist.Normal(mu, sigma).to_event(2))
