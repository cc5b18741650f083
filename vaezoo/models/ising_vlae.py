"""The variational ladder autoencoder on the Ising lattice: independent latent lattices injected at depth."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.ising.exact import BETA_C
from vaezoo.models.block_spin import LatticeConditional
from vaezoo.models.lattice_hierarchy import LatticeConfig, LatticeHierarchy
from vaezoo.nets import OddStack, upsample
from vaezoo.registry import register_model


@dataclass(frozen=True)
class IsingVLAEConfig(LatticeConfig):
    """The lattice sizes of :class:`~vaezoo.models.block_spin.BlockSpinConfig`; the latents are real."""


@register_model("ising_vlae", IsingVLAEConfig)
class IsingVLAE(LatticeHierarchy):
    """Zhao, Song & Ermon's VLAE with lattice-shaped latents and the block-spin model's spin decoder.

    Generative story for spins s on an L x L torus at coupling K (levels l = 1..n, z_l of side L/2^l)::

        z_l ~ N(0, I)                                  l = 1, ..., n, independently
        h_n = G_n(z_n)
        h_l = G_l([upsample(h_{l+1}); z_l])            l = n-1, ..., 1      (C channels, side L/2^l)
        s   ~ p(s | h_1, K)                            the block-spin CheckerboardLattice

    G_l are stacks of ``depth`` odd 3x3 circular convolutions with K-dependent gains
    (:class:`~vaezoo.nets.OddStack`), and the spin decoder is the block-spin model's
    :class:`~vaezoo.models.block_spin.LatticeConditional` reading the C feature maps of h_1 instead of
    one block-spin lattice. Everything is odd in (z, h) and N(0, I) is symmetric, so
    p(-s, -z | K) = p(s, z | K). Noise enters at every scale, but no level is a lattice of block
    spins: a coarse configuration exists only as deterministic features h_l, and the latents are the
    independent noise that shapes them. The default guide ``"ising_vlae"`` mirrors the generator.

    Deviations from the paper: convolutional lattice networks with K-gains in place of MLPs, the
    concatenation of the paper's equations (no gated sum), and a spin likelihood in place of the
    image Bernoulli; the model is conditioned on K like the block-spin model.

    References:
        - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
        - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263.
    """

    binary = False
    independent_levels = True
    default_guide_name = "ising_vlae"

    def __init__(self, config: IsingVLAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        g = {"gain_hidden": c.gain_hidden, "k_ref": BETA_C}
        # levels[j] builds h_{j+1}; the top reads z_n alone, the others also the upsampled h above.
        self.generators = nn.ModuleList(
            OddStack(1 if j == c.levels - 1 else c.channels + 1, c.channels, c.depth, **g)
            for j in range(c.levels)
        )
        self.spins = LatticeConditional(c.channels, c.depth, c.gain_hidden, context_channels=c.channels)

    def default_guide_config(self) -> dict:
        c = self.config
        return {"channels": c.channels, "depth": c.depth, "gain_hidden": c.gain_hidden}

    def z_dist(self, level: int, K: torch.Tensor) -> dist.Distribution:
        side = self.sides[level]
        return dist.Normal(K.new_zeros(()), 1.0).expand([*K.shape, side, side]).to_event(2)

    def features(self, zs: list[torch.Tensor], K: torch.Tensor) -> torch.Tensor:
        """h_1 ``(*lead, C, L/2, L/2)`` from the latents ``zs`` (finest first)."""
        h = self.generators[-1](zs[-1].unsqueeze(-3), K)
        for j in range(len(zs) - 2, -1, -1):
            h = self.generators[j](torch.cat([upsample(h), zs[j].unsqueeze(-3)], dim=-3), K)
        return h

    def spin_dist(self, zs: list[torch.Tensor], K: torch.Tensor) -> dist.Distribution:
        """p(s | z_1, ..., z_n, K), the observed site's distribution over occupations (s + 1)/2."""
        return self.spins.from_features(self.features(zs, K), K, self.L)

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        K = x[:, 1, 0, 0]
        with pyro.plate("data", x.shape[0]):
            zs = [pyro.sample(site, self.z_dist(j + 1, K)) for j, site in enumerate(self.layer_sites)]
            pyro.sample("x", self.spin_dist(zs, K), obs=(x[:, 0] + 1) / 2)
