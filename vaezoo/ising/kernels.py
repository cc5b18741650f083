"""Markov kernels of the 2D Ising model: checkerboard heat-bath and Metropolis sweeps, and their helpers.

Conventions as in :mod:`vaezoo.ising.parameters`: ``H(s) = -J sum_<ij> s_i s_j`` on an ``L x L`` torus,
spins ``+1``/``-1``, reduced coupling ``K = J / T``. Lattices are tensors of shape ``(..., L, L)``
(usually ``(n_chains, L, L)``: a batch of chains updated together) and every random number comes from
an explicit :class:`torch.Generator`, so a run is reproducible from its seed. One call of a kernel is
one *sweep*, the unit of Monte Carlo time used for burn-in, thinning and autocorrelation times. The
cluster update is in :mod:`vaezoo.ising.swendsen_wang`; :mod:`vaezoo.ising.chains` runs chains.

:func:`heat_bath_sweep` and :func:`metropolis_sweep` update the two checkerboard sublattices one after
the other. Sites of one colour have all their neighbours on the other colour, so updating a whole
colour at once is the same as updating its sites one by one in any order; each half-sweep is therefore
a valid single-site kernel that leaves the Boltzmann distribution invariant, and their composition is
irreducible and aperiodic at ``T > 0`` (heat bath: every spin can take either value; Metropolis: for
``T > 0`` every flip has positive probability). A consistent two-colouring of the torus exists only
for even ``L``, so these kernels require even ``L``.

Caveat for Metropolis: a site whose neighbours sum to zero has ``dE = 0`` and flips with probability 1,
and there are configurations in which every site of each sublattice in turn is in that situation (on
``L = 2``: the four stripe states; on ``L = 4``: 36 of the 65,536 states, all at ``E = 0``). Those
configurations cycle deterministically forever: a closed class the chain can neither enter from
outside nor leave, so a chain *started* in one is not ergodic. :func:`vaezoo.ising.chains.sample`
therefore starts Metropolis chains from the ordered state; the heat bath has no such traps.

Performance: a sweep is a few dozen element-wise ops on ``(n_chains, L, L)`` tensors, so for small
lattices the cost is per-op overhead. Batch many chains, and on a busy CPU consider
``torch.set_num_threads(1)``: torch's intra-op threads then mostly wait for each other.

References
----------
N. Metropolis, A. W. Rosenbluth, M. N. Rosenbluth, A. H. Teller and E. Teller, "Equation of state
calculations by fast computing machines", J. Chem. Phys. 21, 1087 (1953).

R. J. Glauber, "Time-dependent statistics of the Ising model", J. Math. Phys. 4, 294 (1963)
(the heat-bath rule).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.observables import validate_lattices
from vaezoo.ising.parameters import check_int, reduced_coupling

__all__ = [
    "check_square",
    "working_copy",
    "uniform",
    "checkerboard_masks",
    "random_lattices",
    "ordered_lattices",
    "heat_bath_kernel",
    "metropolis_kernel",
    "heat_bath_sweep",
    "metropolis_sweep",
]


def check_square(lattices: Tensor, method: str) -> int:
    """``L`` of square ``(..., L, L)`` spin lattices that the kernel ``method`` can update.

    :raises vaezoo.errors.DataError: for non-spins, non-square lattices, or an odd ``L`` with a
        checkerboard kernel.
    """
    validate_lattices(lattices)
    L = lattices.shape[-1]
    if lattices.shape[-2] != L:
        raise DataError(f"samplers need square L x L lattices, got {tuple(lattices.shape[-2:])}")
    if method != "swendsen_wang" and L % 2:
        raise DataError(
            f"the checkerboard {method} sweep needs an even L (an odd torus has no two-colouring), "
            f"got L = {L}; use method='swendsen_wang' for odd L"
        )
    return L


def working_copy(lattices: Tensor) -> Tensor:
    """``lattices`` in a floating dtype, the form every kernel updates."""
    # The kernels compare uniforms with probabilities in the lattice dtype, so integer lattices are
    # promoted; the caller's dtype is restored on the way out.
    return lattices if lattices.is_floating_point() else lattices.to(torch.float32)


def checkerboard_masks(L: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The two sublattices ``(i + j) even`` and ``(i + j) odd`` of an even ``L x L`` torus (bool)."""
    check_int(L, "L", 2)
    if L % 2:
        raise ConfigError(f"a checkerboard colouring of the torus needs an even L, got L = {L}")
    i = torch.arange(L, device=device)
    even = (i.unsqueeze(1) + i.unsqueeze(0)) % 2 == 0
    return even, ~even


def random_lattices(
    n_chains: int,
    L: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Independent uniformly random spins (an infinite-temperature start), ``(n_chains, L, L)``."""
    check_int(n_chains, "n_chains")
    check_int(L, "L", 2)
    bits = torch.randint(0, 2, (n_chains, L, L), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def ordered_lattices(
    n_chains: int, L: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """All spins up (a zero-temperature start), ``(n_chains, L, L)``."""
    check_int(n_chains, "n_chains")
    check_int(L, "L", 2)
    return torch.ones(n_chains, L, L, dtype=dtype, device=device)


def _neighbour_sum(spins: Tensor) -> Tensor:
    return (
        torch.roll(spins, 1, dims=-1)
        + torch.roll(spins, -1, dims=-1)
        + torch.roll(spins, 1, dims=-2)
        + torch.roll(spins, -1, dims=-2)
    )


def uniform(like: Tensor, generator: torch.Generator) -> Tensor:
    """Uniforms on ``[0, 1)`` of the shape, dtype and device of ``like``, drawn from ``generator``."""
    return torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def heat_bath_kernel(
    spins: Tensor, K: float, generator: torch.Generator, masks: tuple[Tensor, Tensor]
) -> Tensor:
    """One heat-bath sweep of floating-point ``spins`` at reduced coupling ``K``, colour by colour."""
    for mask in masks:
        # P(s_i = +1 | neighbours) = e^{K h} / (e^{K h} + e^{-K h}) = sigmoid(2 K h).
        p_up = torch.sigmoid((2.0 * K) * _neighbour_sum(spins))
        new = torch.where(uniform(spins, generator) < p_up, 1.0, -1.0).to(spins.dtype)
        spins = torch.where(mask, new, spins)
    return spins


def metropolis_kernel(
    spins: Tensor, K: float, generator: torch.Generator, masks: tuple[Tensor, Tensor]
) -> Tensor:
    """One Metropolis sweep of floating-point ``spins`` at reduced coupling ``K``, colour by colour."""
    # Flipping s_i costs dE / T = 2 K s_i h_i with s_i h_i in {-4, -2, 0, 2, 4}, so the acceptance
    # min(1, exp(-dE / T)) takes three values; selecting them avoids an exp per site, which is
    # both wasteful and, for small tensors on a busy CPU, very slow in torch's threaded kernels.
    def constant(value: float) -> Tensor:
        return torch.tensor(value, dtype=spins.dtype, device=spins.device)

    always, accept_2, accept_4 = constant(1.0), constant(math.exp(-4.0 * K)), constant(math.exp(-8.0 * K))
    for mask in masks:
        cost = spins * _neighbour_sum(spins)
        p_accept = torch.where(cost <= 0, always, torch.where(cost == 2, accept_2, accept_4))
        accept = uniform(spins, generator) < p_accept
        spins = torch.where(mask & accept, -spins, spins)
    return spins


def heat_bath_sweep(lattices: Tensor, T: float, *, generator: torch.Generator, J: float = 1.0) -> Tensor:
    """One checkerboard heat-bath sweep: each site is redrawn from its conditional distribution.

    :param lattices: ``(..., L, L)`` spins, ``L`` even.
    :param T: temperature ``> 0``.
    :param generator: source of randomness (on the lattices' device).
    :param J: exchange coupling ``> 0``.
    :returns: new lattices (same shape and dtype; the input is not modified).
    """
    L = check_square(lattices, "heat_bath")
    K = reduced_coupling(T, J=J)
    out = heat_bath_kernel(working_copy(lattices), K, generator, checkerboard_masks(L, lattices.device))
    return out.to(lattices.dtype)


def metropolis_sweep(lattices: Tensor, T: float, *, generator: torch.Generator, J: float = 1.0) -> Tensor:
    """One checkerboard Metropolis sweep: each site proposes a flip, accepted with ``min(1, e^{-dE/T})``.

    Do not start chains from arbitrary random states on tiny lattices: see the module docstring for
    the deterministic ``dE = 0`` cycles that make this kernel non-ergodic from a few special states
    (every ``L = 2`` stripe state, 36 states at ``L = 4``). The ordered state is always safe.

    Arguments and return value as for :func:`heat_bath_sweep`.
    """
    L = check_square(lattices, "metropolis")
    K = reduced_coupling(T, J=J)
    out = metropolis_kernel(working_copy(lattices), K, generator, checkerboard_masks(L, lattices.device))
    return out.to(lattices.dtype)
