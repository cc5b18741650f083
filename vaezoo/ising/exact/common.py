"""What every exact method shares: the result type, the size limits and the per-row tables of the torus.

A method module of :mod:`vaezoo.ising.exact` imports from here, never from another method, so the
methods stay independent checks of each other.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from vaezoo.errors import ConfigError

__all__ = [
    "MAX_BRUTE_FORCE_L",
    "MAX_ENUMERATION_L",
    "MAX_TRANSFER_MATRIX_L",
    "MAX_TRANSFER_MAGNETIZATION_L",
    "DTYPE",
    "ExactThermodynamics",
    "check_size",
    "row_tables",
    "GROUND_STATE_K",
    "ground_state",
]

#: Largest ``L`` for brute-force enumeration (``2^25`` states, streamed in chunks).
MAX_BRUTE_FORCE_L = 5
#: Largest ``L`` for which all states (or all their log-probabilities) are materialised at once.
MAX_ENUMERATION_L = 4
#: Largest ``L`` for the row transfer matrix (a dense ``4096 x 4096`` float64 eigenproblem at 12).
MAX_TRANSFER_MATRIX_L = 12
#: Largest ``L`` for which the transfer matrix also resolves the distribution of ``m``.
MAX_TRANSFER_MAGNETIZATION_L = 8

#: Every exact computation runs in float64.
DTYPE = torch.float64

#: From this reduced coupling ``K = J / T`` on (``T <= J / 7``) a finite torus, and the infinite lattice,
#: is in its ground states to double precision: the lightest excitation, one flipped spin, costs
#: ``8 J`` and weighs ``e^{-8K} <= e^{-56} ~ 5e-25`` per site, so it moves ``E/N`` by ``8 J e^{-8K}``
#: (``4e-24 J``), ``C/N`` by ``64 K^2 e^{-8K}`` (``2e-21``) and ``<m^2>`` by ``4 e^{-8K}``, all below
#: the rounding of the O(1) values. The methods themselves lose their last digits long before they
#: overflow there (``e^{-8K}`` against 1, ``K^2`` times a variance that is rounding noise).
GROUND_STATE_K = 7.0


@dataclass(frozen=True)
class ExactThermodynamics:
    """Exact equilibrium values on an ``L x L`` torus (per-site quantities, ``k_B = 1``).

    :ivar L: linear size.
    :ivar T: temperature.
    :ivar J: exchange coupling.
    :ivar method: ``"brute_force"``, ``"transfer_matrix"`` or ``"kaufman"``.
    :ivar log_z: ``ln Z`` (total, not per site).
    :ivar energy_per_site: ``<E> / N``.
    :ivar heat_capacity_per_site: ``(<E^2> - <E>^2) / (N T^2)``.
    :ivar magnetization_sq: ``<m^2>``, or ``None`` if the method does not give it.
    :ivar abs_magnetization: ``<|m|>``, or ``None`` if the method does not give it.
    :ivar magnetization_fourth: ``<m^4>``, or ``None`` if the method does not give it.
    """

    L: int
    T: float
    J: float
    method: str
    log_z: float
    energy_per_site: float
    heat_capacity_per_site: float
    magnetization_sq: float | None = None
    abs_magnetization: float | None = None
    magnetization_fourth: float | None = None

    @property
    def log_z_per_site(self) -> float:
        """``ln Z / N`` (equal to ``-beta f`` per site)."""
        return self.log_z / self.L**2

    @property
    def binder_cumulant(self) -> float | None:
        """``U4 = 1 - <m^4> / (3 <m^2>^2)``, or ``None`` without ``<m^4>``."""
        if self.magnetization_fourth is None or self.magnetization_sq is None:
            return None
        return 1.0 - self.magnetization_fourth / (3.0 * self.magnetization_sq**2)


def check_size(L: int, max_L: int | None, what: str) -> int:
    """``L`` unchanged if it is an int with ``2 <= L <= max_L`` (no upper limit if ``max_L`` is ``None``).

    :param what: the method, named in the error message.
    :raises vaezoo.errors.ConfigError: otherwise.
    """
    if isinstance(L, bool) or not isinstance(L, int):
        raise ConfigError(f"lattice size L must be an int, got {L!r}")
    if L < 2 or (max_L is not None and L > max_L):
        allowed = f"2 <= L <= {max_L}" if max_L is not None else "L >= 2"
        raise ConfigError(f"{what} needs {allowed}, got L = {L}")
    return L


@cache
def row_tables(L: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row lookup tables for the ``2^L`` configurations of one row of ``L`` spins.

    :returns: ``spins`` ``(2^L, L)`` (``+1``/``-1``, float64), ``unequal_in_row`` ``(2^L,)`` (number of
        unsatisfied horizontal bonds, periodic), ``n_up`` ``(2^L,)`` and ``unequal_between``
        ``(2^L, 2^L)`` (unsatisfied vertical bonds between two stacked rows), the last three int64.
    """
    rows = torch.arange(1 << L, dtype=torch.int64)
    bits = (rows.unsqueeze(1) >> torch.arange(L, dtype=torch.int64)) & 1
    spins = (2 * bits - 1).to(DTYPE)
    unequal_in_row = (bits != torch.roll(bits, shifts=-1, dims=1)).sum(dim=1)
    n_up = bits.sum(dim=1)
    unequal_between = (bits.unsqueeze(1) != bits.unsqueeze(0)).sum(dim=2)
    return spins, unequal_in_row, n_up, unequal_between



def ground_state(L: int, K: float, T: float, J: float, method: str, magnetization: bool = True,
                 abs_magnetization: bool = True) -> ExactThermodynamics | None:
    """The exact low-temperature limit when ``K >= GROUND_STATE_K``, else ``None``.

    ``Z = 2 e^{2NK}`` (the two aligned states), ``E/N = -2J``, ``C = 0`` and ``m^2 = |m| = m^4 = 1``;
    see :data:`GROUND_STATE_K` for why these are the values to double precision.

    :param magnetization: fill ``<m^2>`` (the method gives it); ``abs_magnetization``: also ``<|m|>``
        and ``<m^4>``.
    :raises vaezoo.errors.ConfigError: if ``ln Z = 2 N K + ln 2`` overflows a double.
    """
    if K < GROUND_STATE_K:
        return None
    n_sites = L * L
    log_z = 2.0 * n_sites * K + math.log(2.0)
    if not math.isfinite(log_z):
        smallest = 2.0 * n_sites * J / sys.float_info.max
        raise ConfigError(
            f"temperature T = {T!r} is too small for L = {L}: ln Z = 2 N J / T overflows a double; "
            f"T must be > {smallest:.3g} J"
        )
    one = 1.0 if magnetization else None
    both = 1.0 if magnetization and abs_magnetization else None
    return ExactThermodynamics(
        L=L, T=float(T), J=float(J), method=method, log_z=log_z, energy_per_site=-2.0 * J,
        heat_capacity_per_site=0.0, magnetization_sq=one, abs_magnetization=both, magnetization_fourth=both,
    )
