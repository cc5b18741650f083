"""The coarse-to-fine block-spin model of 2D Ising lattices, conditioned on the coupling K = J/T."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.distributions import CheckerboardLattice, SymmetricLatticeCategorical
from vaezoo.ising.exact import BETA_C
from vaezoo.models.lattice_hierarchy import LatticeConfig, LatticeHierarchy, model_trace, sample_model
from vaezoo.nets import GainNet, OddConv, OddStack, apply_2d, upsample
from vaezoo.registry import register_model

#: A binary top level with at most this many sites gets a full categorical over its configurations.
MAX_CATEGORICAL_TOP_SITES = 4


@dataclass(frozen=True)
class BlockSpinConfig(LatticeConfig):
    latent: Literal["binary", "continuous"] = field(
        default="binary", metadata={"help": "binary block spins or real (Normal) latent lattices"}
    )


class LatticeConditional(nn.Module):
    """p(level | coarser level, K) as a :class:`CheckerboardLattice` (or the top's, with no context).

    With F = OddStack(upsample(coarser)) the features of the coarser level (3x3 circular convs)::

        h_A = head_A(F)
        h_B = head_B(tanh(g(K) * (W_F * F + W_s * s_A))) + skip_B(s_A)

    every convolution bias-free and every gain a function of K, so all fields are odd in
    (coarser level, s_A). ``W_F * F`` is computed once per context and broadcast over the values being
    scored (a convolution of the concatenation [F, s_A], split to save work). The skip path is one 3x3
    convolution of s_A times a gain: with the cross kernel and gain K it is the exact heat-bath field
    K sum_nbr s_j. The context may have several channels (``context_channels``, read by
    :meth:`from_features`), as the VLAE's deterministic features do. Without a context
    (``context=False``) h_A = 0, so the A sites are fair coins, as Z2 symmetry requires of a level with
    nothing above it.
    """

    def __init__(
        self, channels: int, depth: int, gain_hidden: int, context: bool = True, context_channels: int = 1
    ):
        super().__init__()
        c, g = channels, gain_hidden
        self.context = OddStack(context_channels, c, depth, gain_hidden=g, k_ref=BETA_C) if context else None
        self.head_a = OddConv(c, 1, gain_hidden=g, k_ref=BETA_C) if context else None
        conv = {"kernel_size": 3, "padding": 1, "padding_mode": "circular", "bias": False}
        self.b_from_context = nn.Conv2d(c, c, **conv) if context else None
        self.b_from_spins = nn.Conv2d(1, c, **conv)
        self.b_gain = GainNet(c, g, k_ref=BETA_C)
        self.head_b = OddConv(c, 1, gain_hidden=g, k_ref=BETA_C)
        self.skip_b = OddConv(1, 1, gain_hidden=g, k_ref=BETA_C)

    def forward(self, coarser: torch.Tensor | None, K: torch.Tensor, side: int) -> CheckerboardLattice:
        """The conditional given a coarser lattice ``(..., side/2, side/2)`` (``None`` without context)."""
        return self.from_features(None if coarser is None else coarser.unsqueeze(-3), K, side)

    def from_features(self, coarser: torch.Tensor | None, K: torch.Tensor, side: int) -> CheckerboardLattice:
        """The conditional given ``context_channels`` coarser feature maps ``(..., C, side/2, side/2)``."""
        if self.context is None:
            pre_b = 0.0
            field_a = K.new_zeros((*K.shape, side, side))
        else:
            feats = self.context(upsample(coarser), K)
            field_a = self.head_a(feats, K).squeeze(-3)
            pre_b = apply_2d(self.b_from_context, feats)
        gain_b = self.b_gain(K)[..., :, None, None]

        def stage_b(spins_a: torch.Tensor) -> torch.Tensor:
            s = spins_a.unsqueeze(-3)
            hidden = torch.tanh((apply_2d(self.b_from_spins, s) + pre_b) * gain_b)
            return (self.head_b(hidden, K) + self.skip_b(s, K)).squeeze(-3)

        return CheckerboardLattice(field_a, stage_b)


class GaussianConditional(nn.Module):
    """p(z_l | z_{l+1}, K) = N(mu(z_{l+1}, K), sigma(K)^2): mu odd (OddConv layers), sigma even (K only)."""

    def __init__(self, channels: int, depth: int, gain_hidden: int):
        super().__init__()
        self.context = OddStack(1, channels, depth, gain_hidden=gain_hidden, k_ref=BETA_C)
        self.head = OddConv(channels, 1, gain_hidden=gain_hidden, k_ref=BETA_C)
        self.raw_scale = nn.Sequential(nn.Linear(1, gain_hidden), nn.Tanh(), nn.Linear(gain_hidden, 1))
        nn.init.zeros_(self.raw_scale[-1].weight)
        nn.init.constant_(self.raw_scale[-1].bias, 0.5413)  # softplus(0.5413) = 1

    def forward(self, coarser: torch.Tensor, K: torch.Tensor) -> dist.Distribution:
        up = upsample(coarser).unsqueeze(-3)
        loc = self.head(self.context(up, K), K).squeeze(-3)
        scale = F.softplus(self.raw_scale((K / BETA_C).unsqueeze(-1))) + 1e-3
        return dist.Normal(loc, scale[..., None]).to_event(2)


@register_model("block_spin", BlockSpinConfig)
class BlockSpin(LatticeHierarchy):
    """Kadanoff's block spins as a generative program: a lattice hierarchy decoded coarse to fine.

    Generative story for spins s on an L x L torus at coupling K (levels l = 1..n, z_l of side L/2^l)::

        z_n ~ p(z_n | K)                   binary: symmetric categorical (<= 4 sites) or two-stage
                                           lattice; continuous: N(0, I)
        z_l ~ p(z_l | z_{l+1}, K)          binary: CheckerboardLattice; continuous: N(mu, sigma^2)
        s   ~ p(s | z_1, K)                CheckerboardLattice (can express the heat-bath conditional)

    with every network odd in its lattice inputs and K entering only through channel gains g(K), so
    p(-s, -z | K) = p(s, z | K) exactly. The model is conditioned on K, so one model samples at any
    temperature it was trained on. Data are ``x = (batch, 2, L, L)``: spins ±1, then K broadcast over
    the lattice (:func:`~vaezoo.ising.lattice_data.lattice_input`); the observed site ``"x"`` holds
    the occupations (s + 1)/2, so importance sampling estimates log p(s | K). Binary latents are
    occupations {0, 1} too (block spin 2 z - 1).

    The correctness criterion is Stuhlmüller et al.'s: the marginal of s must be the Boltzmann
    distribution at K; it is checked exactly at L = 4 (:func:`~vaezoo.inference.exact_kl.exact_kl_l4`)
    and bounded through the free energy at larger L.

    References:
        - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263.
        - Stuhlmüller, Hawkins, Siddharth & Goodman (2015), Coarse-to-Fine Sequential Monte Carlo
          for Probabilistic Programs, arXiv:1509.02962.
        - Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR.
    """

    default_guide_name = "block_amortized"

    def __init__(self, config: BlockSpinConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.binary = c.latent == "binary"
        args = (c.channels, c.depth, c.gain_hidden)
        self.decoders = nn.ModuleList([LatticeConditional(*args)])  # spins given z1
        for _ in range(1, c.levels):
            self.decoders.append(LatticeConditional(*args) if self.binary else GaussianConditional(*args))
        top = self.sides[-1]
        self.top_categorical = self.binary and top * top <= MAX_CATEGORICAL_TOP_SITES
        if self.top_categorical:
            self.top = nn.Sequential(
                nn.Linear(1, 2 * c.gain_hidden), nn.Tanh(), nn.Linear(2 * c.gain_hidden, 2 ** (top * top))
            )
            nn.init.zeros_(self.top[-1].weight)
            nn.init.zeros_(self.top[-1].bias)
        elif self.binary:
            self.top = LatticeConditional(*args, context=False)

    # --- the generative program ------------------------------------------------------------------

    def lattice_values(self, value: torch.Tensor) -> torch.Tensor:
        """A latent site's value as the networks read it: block spins ±1 (binary) or the real value."""
        return 2 * value - 1 if self.binary else value

    def top_dist(self, K: torch.Tensor) -> dist.Distribution:
        side = self.sides[-1]
        if self.top_categorical:
            return SymmetricLatticeCategorical(self.top((K / BETA_C).unsqueeze(-1)), side)
        if self.binary:
            return self.top(None, K, side)
        return dist.Normal(K.new_zeros(()), 1.0).expand([*K.shape, side, side]).to_event(2)

    def level_dist(self, level: int, coarser_value: torch.Tensor, K: torch.Tensor) -> dist.Distribution:
        """p(level | level + 1, K); ``level = 0`` is the spins, whose value is the occupation (s + 1)/2."""
        decoder = self.decoders[level]
        coarser = self.lattice_values(coarser_value)
        if isinstance(decoder, GaussianConditional):
            return decoder(coarser, K)
        return decoder(coarser, K, self.sides[level])

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        K = x[:, 1, 0, 0]
        n = self.config.levels
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(f"z{n}", self.top_dist(K))
            for level in range(n - 1, 0, -1):
                z = pyro.sample(f"z{level}", self.level_dist(level, z, K))
            pyro.sample("x", self.level_dist(0, z, K), obs=(x[:, 0] + 1) / 2)


# model_trace and sample_model live in lattice_hierarchy (they serve every lattice model).
__all__ = [
    "BlockSpin",
    "BlockSpinConfig",
    "GaussianConditional",
    "LatticeConditional",
    "model_trace",
    "sample_model",
]
