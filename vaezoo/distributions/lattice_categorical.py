"""A Z2-symmetric categorical over every configuration of a tiny lattice: the block-spin model's top."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints


class SymmetricLatticeCategorical(TorchDistribution):
    """p(c) ∝ exp((theta_c + theta_{-c}) / 2) over all 2^M configurations of an ``m x m`` lattice.

    A full categorical, so the top level of a hierarchy can be any distribution, with ``p(c) = p(-c)``
    exactly. Configuration index ``i`` has occupation ``v_k = bit_k(i)`` at site ``k`` (row-major), the
    order of :func:`vaezoo.ising.exact.enumerate_states`; the flip ``-c`` has index ``2^M - 1 - i``, so
    the symmetrization is an average with the reversed logits.

    :param raw_logits: ``(*batch, 2^(m^2))``.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 2)
    has_rsample = False

    def __init__(self, raw_logits: torch.Tensor, side: int, validate_args: bool | None = None):
        if raw_logits.shape[-1] != 2 ** (side * side):
            raise ValueError(
                f"need 2^{side * side} logits for a {side}x{side} lattice, got {raw_logits.shape[-1]}"
            )
        sym = 0.5 * (raw_logits + raw_logits.flip(-1))
        self.logits = sym - sym.logsumexp(-1, keepdim=True)
        self.side = side
        self.weights = (2 ** torch.arange(side * side, device=raw_logits.device)).reshape(side, side)
        super().__init__(raw_logits.shape[:-1], torch.Size((side, side)), validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        index = (value.long() * self.weights).sum((-2, -1))
        shape = torch.broadcast_shapes(self.batch_shape, index.shape)
        logits = self.logits.expand(*shape, self.logits.shape[-1])
        return logits.gather(-1, index.expand(shape).unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        probs = self.logits.exp().expand(*shape, self.logits.shape[-1]).reshape(-1, self.logits.shape[-1])
        index = torch.multinomial(probs, 1).reshape(shape)
        bits = (index[..., None, None] // self.weights) % 2
        return bits.to(self.logits.dtype)

    def entropy(self) -> torch.Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)


__all__ = ["SymmetricLatticeCategorical"]
