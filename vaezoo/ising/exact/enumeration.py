"""Brute-force enumeration of the ``L x L`` torus: every state, its index, and the density of states.

All ``2^N`` states (``L <= 5``) are enumerated in chunks and histogrammed into the joint density of
states ``g(number of unsatisfied bonds, number of up spins)``; every thermodynamic quantity at every
temperature follows from that histogram. ``L <= 4`` also gives log-probabilities of every state (65,536
at ``L = 4``), for exact divergences such as ``KL(p||q)``.

State ordering used by :func:`enumerate_states`, :func:`state_index` and
:func:`brute_force_log_probs`: the state with index ``i`` has spin ``s[r, c] = 2 * bit_{r L + c}(i) - 1``,
i.e. bit ``k`` of the index is the 0/1 occupation ``(s + 1) / 2`` of the site ``k`` in row-major order.
Index 0 is all spins down.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import torch
from torch import Tensor

from vaezoo.errors import DataError
from vaezoo.ising.exact.common import (
    DTYPE,
    MAX_BRUTE_FORCE_L,
    MAX_ENUMERATION_L,
    ExactThermodynamics,
    check_size,
    ground_state,
    row_tables,
)
from vaezoo.ising.observables import validate_lattices
from vaezoo.ising.parameters import reduced_coupling

__all__ = [
    "enumerate_states",
    "state_index",
    "density_of_states",
    "brute_force_log_probs",
    "brute_force_thermodynamics",
]

_CHUNK = 1 << 21  # states per chunk of the enumeration: a few 16 MB int64 temporaries


@cache
def _block_tables(L: int, n_rows: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every configuration of ``n_rows`` consecutive rows, with open ends.

    :returns: int64 ``(unequal, n_up, first_row, last_row)`` of shape ``(2^(n_rows L),)``: unsatisfied
        bonds inside the block (horizontal ones and vertical ones between its rows), up spins, and
        the ids of the block's first and last row (needed to close the bonds to the other block).
    """
    _, unequal_in_row, n_up_row, unequal_between = row_tables(L)
    mask = (1 << L) - 1
    indices = torch.arange(1 << (L * n_rows), dtype=torch.int64)
    rows = [(indices >> (L * k)) & mask for k in range(n_rows)]
    unequal = torch.zeros_like(indices)
    n_up = torch.zeros_like(indices)
    for k, row in enumerate(rows):
        unequal += unequal_in_row[row]
        n_up += n_up_row[row]
        if k + 1 < n_rows:
            unequal += unequal_between[row, rows[k + 1]]
    return unequal, n_up, rows[0], rows[-1]


def _state_keys(L: int) -> Iterator[Tensor]:
    """Yield ``unequal_bonds * (N + 1) + n_up`` for every state, in index order, chunk by chunk.

    Every one of the ``2^N`` states gets its own key; to make that fast the lattice is cut into a
    low block (rows ``0..h-1``, the low bits of the index) and a high block (rows ``h..L-1``). A state is
    a pair (low config ``i``, high config ``j``) with index ``i + 2^(hL) j``, and its bond count is the sum
    of both blocks' internal counts plus the two rows of vertical bonds that join them on the torus
    (last low row to first high row, last high row back to row 0). That is a handful of vectorised
    operations per state instead of ``2N`` bond checks.
    """
    n_sites = L * L
    unequal_between = row_tables(L)[3]
    h = L // 2
    low, high = _block_tables(L, h), _block_tables(L, L - h)
    low_key = low[0] * (n_sites + 1) + low[1]
    high_key = high[0] * (n_sites + 1) + high[1]
    joint = unequal_between * (n_sites + 1)
    n_low = low_key.numel()
    chunk = max(1, _CHUNK // n_low)
    for start in range(0, high_key.numel(), chunk):
        j = slice(start, start + chunk)
        keys = (
            high_key[j, None]
            + low_key[None, :]
            + joint[low[3][None, :], high[2][j, None]]
            + joint[high[3][j, None], low[2][None, :]]
        )
        yield keys.flatten()  # row-major over (j, i) is index order


def enumerate_states(L: int, dtype: torch.dtype = DTYPE) -> Tensor:
    """All ``2^N`` spin configurations of an ``L x L`` lattice, in index order.

    :param L: ``2 <= L <= 4`` (``L = 4`` gives 65,536 states).
    :param dtype: dtype of the returned spins.
    :returns: tensor of shape ``(2^N, L, L)`` with entries ``+1``/``-1``; row ``i`` is the state with
        index ``i`` (see the module docstring for the bit convention).
    """
    check_size(L, MAX_ENUMERATION_L, "enumerate_states")
    n_sites = L * L
    indices = torch.arange(1 << n_sites, dtype=torch.int64)
    bits = (indices.unsqueeze(1) >> torch.arange(n_sites, dtype=torch.int64)) & 1
    return (2 * bits - 1).to(dtype).reshape(-1, L, L)


def state_index(lattices: Tensor) -> Tensor:
    """Index of each configuration in the ordering of :func:`enumerate_states`.

    :param lattices: ``(..., L, L)`` spins with ``L * L <= 62`` (so the index fits in int64).
    :returns: int64 tensor of shape ``(...)``.
    """
    validate_lattices(lattices)
    rows, cols = lattices.shape[-2:]
    if rows * cols > 62:
        raise DataError(f"state_index needs at most 62 sites to fit an int64, got {rows} x {cols}")
    weights = (1 << torch.arange(rows * cols, dtype=torch.int64, device=lattices.device)).reshape(rows, cols)
    return ((lattices > 0).to(torch.int64) * weights).sum(dim=(-2, -1))


@cache
def _density_of_states(L: int) -> Tensor:
    n_sites = L * L
    n_bins = (2 * n_sites + 1) * (n_sites + 1)
    counts = torch.zeros(n_bins, dtype=torch.int64)
    for keys in _state_keys(L):
        counts += torch.bincount(keys, minlength=n_bins)
    return counts.reshape(2 * n_sites + 1, n_sites + 1)


def density_of_states(L: int) -> Tensor:
    """Joint density of states by exhaustive enumeration.

    :param L: ``2 <= L <= 5``. The result is cached; ``L = 5`` (``2^25`` states) takes about a second once.
    :returns: int64 tensor ``g`` of shape ``(2N + 1, N + 1)``: ``g[d, n]`` is the number of states with
        ``d`` unsatisfied bonds (bond sum ``2N - 2d``, energy ``-J (2N - 2d)``) and ``n`` up spins
        (``m = (2n - N) / N``). It sums to ``2^N``.
    """
    check_size(L, MAX_BRUTE_FORCE_L, "brute-force enumeration")
    return _density_of_states(L).clone()


def brute_force_log_probs(L: int, T: float, J: float = 1.0) -> Tensor:
    """Exact Boltzmann log-probabilities ``ln p(s)`` of every state, for exact divergences.

    :param L: ``2 <= L <= 4``.
    :param T: temperature ``> 0``.
    :param J: exchange coupling ``> 0``.
    :returns: float64 tensor of shape ``(2^N,)``, entry ``i`` for the state of index ``i``
        (:func:`enumerate_states`); ``logsumexp`` of it is 0.
    """
    check_size(L, MAX_ENUMERATION_L, "brute_force_log_probs")
    K = reduced_coupling(T, J=J)
    n_sites = L * L
    unequal = torch.cat(list(_state_keys(L))) // (n_sites + 1)
    # Measured from the ground state (bond sum 2N), so no weight overflows however large K is.
    log_weights = -2.0 * K * unequal.to(DTYPE)
    return log_weights - torch.logsumexp(log_weights, dim=0)


def brute_force_thermodynamics(L: int, T: float, J: float = 1.0) -> ExactThermodynamics:
    """Exact thermodynamics by summing over all ``2^N`` states (``2 <= L <= 5``).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: exchange coupling ``> 0``.
    """
    check_size(L, MAX_BRUTE_FORCE_L, "brute-force enumeration")
    K = reduced_coupling(T, J=J)
    limit = ground_state(L, K, T, J, "brute_force")
    if limit is not None:
        return limit
    n_sites = L * L
    g = _density_of_states(L).to(DTYPE)
    bond_sum = 2.0 * n_sites - 2.0 * torch.arange(2 * n_sites + 1, dtype=DTYPE)
    m = (2.0 * torch.arange(n_sites + 1, dtype=DTYPE) - n_sites) / n_sites
    log_weights = torch.where(g > 0, torch.log(g) + K * bond_sum.unsqueeze(1), -torch.inf)
    log_z = torch.logsumexp(log_weights.flatten(), dim=0)
    p = torch.exp(log_weights - log_z)
    p_bonds, p_m = p.sum(dim=1), p.sum(dim=0)
    mean_bonds = (p_bonds * bond_sum).sum()
    var_bonds = (p_bonds * (bond_sum - mean_bonds).square()).sum()
    return ExactThermodynamics(
        L=L,
        T=float(T),
        J=float(J),
        method="brute_force",
        log_z=float(log_z),
        energy_per_site=float(-J * mean_bonds / n_sites),
        heat_capacity_per_site=float(K**2 * var_bonds / n_sites),
        magnetization_sq=float((p_m * m.square()).sum()),
        abs_magnetization=float((p_m * m.abs()).sum()),
        magnetization_fourth=float((p_m * m.pow(4)).sum()),
    )
