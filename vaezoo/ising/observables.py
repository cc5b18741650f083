"""Observables of 2D Ising configurations: functions of one lattice, batched over any leading shape.

Conventions (shared by the whole :mod:`vaezoo.ising` package): spins are ``+1``/``-1`` on an
``L x L`` torus, ``H(s) = -J sum_<ij> s_i s_j`` over nearest-neighbour bonds with exchange coupling ``J``
(each site owns the bond to its right and the bond below it, so there are ``2N`` bonds, ``N = L^2``),
magnetisation is per site, ``m = (1/N) sum_i s_i``. Lattices are tensors of shape ``(..., L, L)`` and
every observable maps them to a tensor of shape ``(...)``. Their Monte Carlo averages with error bars
are in :mod:`vaezoo.ising.estimates`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.errors import DataError
from vaezoo.ising.parameters import check_exchange_coupling

__all__ = [
    "validate_lattices",
    "energy",
    "energy_per_site",
    "magnetization",
    "abs_magnetization",
    "magnetization_sq",
    "two_point_correlation",
]


def validate_lattices(lattices: Tensor) -> Tensor:
    """Check that ``lattices`` holds ``+1``/``-1`` spins in its last two dimensions.

    :param lattices: tensor of shape ``(..., L, L)`` (any real or integer dtype).
    :returns: the same tensor, so the call can be chained.
    :raises vaezoo.errors.DataError: (a ``ValueError``) if it is not a tensor, has fewer than two
        dimensions, an empty lattice, or values other than ``+1`` and ``-1``.
    """
    if not isinstance(lattices, Tensor):
        raise DataError(f"lattices must be a torch.Tensor of +1/-1 spins, got {type(lattices).__name__}")
    if lattices.dim() < 2 or lattices.shape[-1] == 0 or lattices.shape[-2] == 0:
        raise DataError(
            f"lattices must have shape (..., L, L) with L >= 1, got shape {tuple(lattices.shape)}"
        )
    if lattices.dtype == torch.bool or lattices.is_complex():
        raise DataError(f"lattices must hold the numbers +1 and -1, got dtype {lattices.dtype}")
    ok = (lattices == 1) | (lattices == -1)
    if not bool(ok.all()):
        bad = lattices[~ok].unique()[:5].tolist()
        raise DataError(
            f"lattices may only contain the spin values +1 and -1; found {bad}. "
            "If you have 0/1 occupation variables, convert them with 2 * x - 1."
        )
    return lattices


def _as_spins(lattices: Tensor) -> Tensor:
    return validate_lattices(lattices).to(torch.float64)


def _bond_sum(spins: Tensor) -> Tensor:
    # Each site pairs with its right and lower neighbour, so every torus bond is counted once (for
    # L = 2 the two bonds joining the same pair of sites are both counted, as on the torus graph).
    right = torch.roll(spins, shifts=-1, dims=-1)
    down = torch.roll(spins, shifts=-1, dims=-2)
    return (spins * (right + down)).sum(dim=(-2, -1))


def energy(lattices: Tensor, J: float = 1.0) -> Tensor:
    """Total energy ``H(s) = -J sum_<ij> s_i s_j`` of each configuration on the torus.

    :param lattices: ``(..., L, L)`` tensor of ``+1``/``-1`` spins.
    :param J: exchange coupling ``> 0``.
    :returns: float64 tensor of shape ``(...)``.
    """
    return -check_exchange_coupling(J) * _bond_sum(_as_spins(lattices))


def energy_per_site(lattices: Tensor, J: float = 1.0) -> Tensor:
    """Energy per site ``H(s) / N`` of each configuration; float64 tensor of shape ``(...)``."""
    n_sites = lattices.shape[-1] * lattices.shape[-2]
    return energy(lattices, J) / n_sites


def magnetization(lattices: Tensor) -> Tensor:
    """Signed magnetisation per site ``m = (1/N) sum_i s_i``; float64 tensor of shape ``(...)``."""
    return _as_spins(lattices).mean(dim=(-2, -1))


def abs_magnetization(lattices: Tensor) -> Tensor:
    """``|m|`` of each configuration (the order parameter of a finite, symmetric system)."""
    return magnetization(lattices).abs()


def magnetization_sq(lattices: Tensor) -> Tensor:
    """``m^2`` of each configuration."""
    return magnetization(lattices).square()


def two_point_correlation(lattices: Tensor) -> Tensor:
    """Per-configuration spin product ``g(r) = <s_i s_{i+r}>_sites`` along the lattice axes.

    The average runs over all sites and over both axis directions (which are equivalent by the
    symmetry of the torus, so averaging halves the noise).

    :param lattices: ``(..., L, L)`` tensor of spins; the lattice must be square.
    :returns: float64 tensor of shape ``(..., L // 2 + 1)`` for ``r = 0, ..., L // 2`` (larger ``r``
        repeat by periodicity, ``g(r) = g(L - r)``).
    """
    spins = _as_spins(lattices)
    L = spins.shape[-1]
    if spins.shape[-2] != L:
        raise DataError(f"two_point_correlation needs square L x L lattices, got {tuple(spins.shape[-2:])}")
    values = []
    for r in range(L // 2 + 1):
        along_x = (spins * torch.roll(spins, shifts=-r, dims=-1)).mean(dim=(-2, -1))
        along_y = (spins * torch.roll(spins, shifts=-r, dims=-2)).mean(dim=(-2, -1))
        values.append(0.5 * (along_x + along_y))
    return torch.stack(values, dim=-1)
