"""A lattice of ±1 spins sampled in two checkerboard stages: the block-spin model's conditionals.

Probabilities use the Bernoulli convention ``p(s_i = +1) = sigma(2 h_i)`` with local field ``h_i``, so
``log p(s_i) = -softplus(-2 h_i s_i)``, which is computed identically for ``(s, h)`` and ``(-s, -h)``.

References:
    - Glauber (1963), Time-dependent statistics of the Ising model, J. Math. Phys. 4, 294 (heat bath).
    - Larochelle & Murray (2011), The Neural Autoregressive Distribution Estimator, AISTATS, and
      Reed et al. (2017), Parallel Multiscale Autoregressive Density Estimation, ICML (grouped,
      coarse-to-fine autoregressive factorizations like the two-stage checkerboard).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints


def sublattice_a(m: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean ``(m, m)`` mask of sublattice A, the sites with ``i + j`` even."""
    idx = torch.arange(m, device=None if like is None else like.device)
    return (idx[:, None] + idx[None, :]) % 2 == 0


def spin_log_prob(spins: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """log p(s_i) = log sigma(2 h_i s_i), elementwise, for p(s_i = +1) = sigma(2 h_i)."""
    return -F.softplus(-2.0 * field * spins)


def draw_spins(field: torch.Tensor) -> torch.Tensor:
    """Independent spins ±1 with p(+1) = sigma(2 h)."""
    return torch.where(torch.rand_like(field) < torch.sigmoid(2.0 * field), 1.0, -1.0).to(field.dtype)


class CheckerboardLattice(TorchDistribution):
    """p(v) = prod_{i in A} p(s_i | h^A_i) prod_{i in B} p(s_i | h^B_i(s_A)),   s = 2v - 1 in {-1, +1}.

    A distribution over an ``m x m`` lattice of {0, 1} occupations in two autoregressive stages.
    Sublattice A (``(i + j)`` even) is factorized given a context; sublattice B is factorized given
    the A values. Every nearest-neighbour bond joins an A site to a B site, so stage B can express
    the exact heat-bath conditional ``p(s_i = +1 | s_A) = sigma(2 K sum_nbr s_j)``, the
    nearest-neighbour correlation a factorized Bernoulli decoder cannot represent.

    :param field_a: ``(*batch, m, m)`` local fields of the A sites (entries on B sites are ignored).
    :param stage_b: maps the spins with B sites zeroed, ``(*b, m, m)`` for any ``*b`` broadcastable
        with ``*batch``, to the local fields ``(*b', m, m)`` of the B sites (entries on A ignored).
        It carries the context (coarser level, K) in its closure.

    Values are {0, 1} occupations (Bernoulli convention, so the observed site of a model is a
    Bernoulli-type site); ``log_prob`` broadcasts values with extra leading dims against the batch
    shape, as the particle plate needs; ``expand`` is Pyro's :class:`ExpandedDistribution`.
    Normalized by construction: each stage is a product of normalized Bernoullis. For odd ``m`` the
    two-colouring cannot close around the torus, so a few bonds join sites of the same sublattice; the
    distribution stays normalized but stage B no longer sees all neighbours there. (In the block-spin
    model only a top level with more than 4 sites can have odd side.)
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 2)
    has_rsample = False

    def __init__(
        self,
        field_a: torch.Tensor,
        stage_b: Callable[[torch.Tensor], torch.Tensor],
        validate_args: bool | None = None,
    ):
        self.field_a = field_a
        self.stage_b = stage_b
        self.mask_a = sublattice_a(field_a.shape[-1], field_a)
        super().__init__(field_a.shape[:-2], field_a.shape[-2:], validate_args=validate_args)

    def fields(self, spins: torch.Tensor) -> torch.Tensor:
        """Local fields of every site of the lattice ``spins`` (A from the context, B from ``spins_A``)."""
        field_b = self.stage_b(spins * self.mask_a)
        return torch.where(self.mask_a, self.field_a, field_b)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(self.batch_shape, value.shape[:-2]) + self.event_shape
        spins = (2 * value - 1).to(self.field_a.dtype).expand(shape)
        return spin_log_prob(spins, self.fields(spins)).sum((-2, -1))

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        spins_a = draw_spins(self.field_a.expand(shape)) * self.mask_a
        spins_b = draw_spins(self.stage_b(spins_a).expand(shape))
        spins = torch.where(self.mask_a, spins_a, spins_b)
        return (spins + 1) / 2


__all__ = ["CheckerboardLattice", "draw_spins", "spin_log_prob", "sublattice_a"]
