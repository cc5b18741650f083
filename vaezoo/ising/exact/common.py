"""What every exact method shares: the result type, the size limits and the per-row tables of the torus.

A method module of :mod:`vaezoo.ising.exact` imports from here, never from another method, so the
methods stay independent checks of each other.
"""

from __future__ import annotations

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

