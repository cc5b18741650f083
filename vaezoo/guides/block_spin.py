"""Guides of the block-spin model: a learned bottom-up encoder and the renormalization-group map."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.config import resolve
from vaezoo.distributions import BlockMajority
from vaezoo.errors import ConfigError
from vaezoo.ising.exact import BETA_C
from vaezoo.nets import OddBottomUp
from vaezoo.registry import register_guide
from vaezoo.zoo_module import ZooModule


def require_block_spin(model, guide: str):
    from vaezoo.models.block_spin import BlockSpin

    if not isinstance(model, BlockSpin):
        raise ConfigError(
            f"guide {guide!r} infers the block spins of model 'block_spin', not {type(model).__name__}; "
            "use that model's default_guide() instead"
        )
    return model


@dataclass(frozen=True)
class BlockAmortizedConfig:
    channels: int = field(default=16, metadata={"help": "feature channels of each level's encoder", "min": 1})
    depth: int = field(
        default=2, metadata={"help": "3x3 conv layers before each 2x2 coarse-graining", "min": 0}
    )
    gain_hidden: int = field(
        default=8, metadata={"help": "hidden units of the MLPs of K giving the gains", "min": 1}
    )
    min_scale: float = field(
        default=1e-3, metadata={"help": "floor on Normal scales (continuous latents)", "min": 0}
    )


def bottom_up_rungs(c: BlockAmortizedConfig, levels: int) -> nn.ModuleList:
    """One :class:`~vaezoo.nets.OddBottomUp` rung per level: the first reads the spins, the others the
    features of the rung below (the deterministic bottom-up pass of the ladder and VLAE guides)."""
    return nn.ModuleList(
        OddBottomUp(c.channels if j else 1, c.channels, c.depth, c.gain_hidden, c.min_scale, k_ref=BETA_C)
        for j in range(levels)
    )


class LevelEncoder(nn.Module):
    """q(z_l | z_{l-1}, K) from the finer level (spins for l = 1): one :class:`~vaezoo.nets.OddBottomUp` rung.

    Its read-out h = head(down(F)) + skip(z_{l-1}), F = OddStack(z_{l-1}), is odd, with skip a 2x2
    stride-2 OddConv (the block sum times a gain, i.e. a soft majority rule). Binary: Bernoulli with
    p(z = 1) = sigma(2 h); a block with zero input gets h = 0, the RG tie rule. Continuous: N(h, sigma^2)
    with the rung's even scale.
    """

    def __init__(self, binary: bool, c: BlockAmortizedConfig):
        super().__init__()
        self.binary = binary
        self.rung = OddBottomUp(1, c.channels, c.depth, c.gain_hidden, c.min_scale, k_ref=BETA_C)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the rung was factored out name its layers one level up, and binary
        # ones have no scale layers (unused by Bernoulli levels): rename, and keep the current scales.
        for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "rung.")]:
            state_dict[prefix + "rung." + key[len(prefix) :]] = state_dict.pop(key)
        if self.binary:
            for name, value in self.rung.state_dict().items():
                if name.startswith("scale_"):
                    state_dict.setdefault(prefix + "rung." + name, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, finer: torch.Tensor, K: torch.Tensor) -> dist.Distribution:
        _, h, scale = self.rung(finer.unsqueeze(-3), K)
        if self.binary:
            return dist.Bernoulli(logits=2 * h).to_event(2)
        return dist.Normal(h, scale).to_event(2)


@register_guide("block_amortized", BlockAmortizedConfig)
class BlockAmortized(ZooModule):
    """q(z | s, K) = q(z_1 | s, K) prod_{l>1} q(z_l | z_{l-1}, K): a bottom-up chain of odd conv encoders.

    Each factor is factorized over the sites of its level (Bernoulli for binary block spins, Normal
    for continuous latents), see :class:`LevelEncoder`. Odd networks make q(-z | -s) = q(z | s),
    mirroring the model's symmetry. Binary latents need score-function gradients
    (``ScoreFunction(ELBO(), baseline="avg")``); continuous ones are reparameterized.

    References:
        - Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR.
        - Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks, ICML.
    """

    def __init__(self, model, config: BlockAmortizedConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = resolve(BlockAmortizedConfig, config, overrides)
        model = require_block_spin(model, "block_amortized")
        self.binary = model.binary
        self.sites = model.layer_sites
        self.encoders = nn.ModuleList(LevelEncoder(self.binary, self.config) for _ in self.sites)

    def forward(self, x: torch.Tensor) -> None:
        K = x[:, 1, 0, 0]
        finer = x[:, 0]
        with pyro.plate("data", x.shape[0]):
            for name, encoder in zip(self.sites, self.encoders, strict=True):
                z = pyro.sample(name, encoder(finer, K))
                finer = 2 * z - 1 if self.binary else z


@dataclass(frozen=True)
class RGGuideConfig:
    pass


@register_guide("block_rg", RGGuideConfig)
class RenormalizationGroupGuide(ZooModule):
    """The fixed real-space RG map: z_l = majority(z_{l-1}) over 2x2 blocks, random ±1 on ties.

    No parameters, so the ELBO's gradient needs no score function: it is the model's
    E_q[grad log p(s, z)] alone. Its support is the majority rule's, so log q = -inf for other block
    configurations; it cannot serve as the r(z | s) of the free-energy bound of a model whose
    posterior leaves that support (:func:`~vaezoo.inference.free_energy.free_energy_bound` then returns
    +inf, a valid but empty bound). Binary latents only.

    Deviation from Kadanoff's blocks of odd side (3x3, no ties): 2x2 blocks halve the side per level
    as the model does, at the price of ties (6 of the 16 block configurations).

    References:
        - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263.
        - Niemeijer & van Leeuwen (1974), Wilson theory for spin systems on a triangular lattice,
          PRL 31, 1411 (majority-rule block spins).
    """

    def __init__(self, model, config: RGGuideConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = resolve(RGGuideConfig, config, overrides)
        model = require_block_spin(model, "block_rg")
        if not model.binary:
            raise ConfigError(
                "guide 'block_rg' computes majority-rule block spins, which needs latent='binary'; "
                "this model has latent='continuous': use guide 'block_amortized'"
            )
        self.sites = model.layer_sites

    def forward(self, x: torch.Tensor) -> None:
        finer = x[:, 0]
        with pyro.plate("data", x.shape[0]):
            for name in self.sites:
                finer = 2 * pyro.sample(name, BlockMajority(finer)) - 1
