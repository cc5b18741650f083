"""The majority rule over 2x2 blocks as a distribution: the renormalization-group guide's factor.

References:
    - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263.
    - Niemeijer & van Leeuwen (1974), Wilson theory for spin systems on a triangular lattice,
      PRL 31, 1411 (majority-rule block spins).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints

LOG2 = math.log(2.0)


def block_sum(spins: torch.Tensor) -> torch.Tensor:
    """Sum of the spins of each 2x2 block, ``(..., 2m, 2m) -> (..., m, m)``."""
    *lead, n, _ = spins.shape
    return spins.reshape(*lead, n // 2, 2, n // 2, 2).sum((-3, -1))


class BlockMajority(TorchDistribution):
    """The majority rule over 2x2 blocks with random tie-breaks, as a distribution over block occupations.

    q(z_b = 1) = 1 if the block sum S_b > 0, 0 if S_b < 0, 1/2 if S_b = 0 (two up, two down), so
    log q(z) = -(number of ties) ln 2 on the rule's support and -inf off it.

    :param finer: ``(*batch, 2m, 2m)`` spins ±1 of the level below.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 2)
    has_rsample = False

    def __init__(self, finer: torch.Tensor, validate_args: bool | None = None):
        self.block_sum = block_sum(finer)
        super().__init__(self.block_sum.shape[:-2], self.block_sum.shape[-2:], validate_args=validate_args)

    @property
    def probs(self) -> torch.Tensor:
        return (torch.sign(self.block_sum) + 1) / 2

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        S = self.block_sum
        ok = ((S > 0) & (value == 1)) | ((S < 0) & (value == 0))
        site = torch.where(S == 0, -LOG2, torch.where(ok, 0.0, -torch.inf))
        return site.sum((-2, -1))

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        probs = self.probs.expand(torch.Size(sample_shape) + self.batch_shape + self.event_shape)
        return torch.bernoulli(probs)


__all__ = ["BlockMajority", "block_sum"]
