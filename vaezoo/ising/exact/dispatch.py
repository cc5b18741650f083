"""Exact thermodynamics by a chosen or automatic method, and exact log-probabilities of configurations."""

from __future__ import annotations

from torch import Tensor

from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.exact.common import MAX_TRANSFER_MAGNETIZATION_L, ExactThermodynamics, check_size
from vaezoo.ising.exact.enumeration import brute_force_thermodynamics
from vaezoo.ising.exact.kaufman import kaufman_log_z, kaufman_thermodynamics
from vaezoo.ising.exact.transfer_matrix import transfer_matrix_thermodynamics
from vaezoo.ising.observables import energy, validate_lattices
from vaezoo.ising.parameters import check_exchange_coupling, check_temperature

__all__ = ["exact_thermodynamics", "exact_log_prob"]


def exact_thermodynamics(L: int, T: float, J: float = 1.0, method: str = "auto") -> ExactThermodynamics:
    """Exact thermodynamics with a chosen or automatic method.

    :param method: ``"brute_force"`` (``L <= 5``), ``"transfer_matrix"`` (``L <= 12``), ``"kaufman"``
        (any ``L``, no magnetisation) or ``"auto"``: the transfer matrix up to ``L = 8`` (every field
        filled), Kaufman beyond.
    """
    methods = {
        "brute_force": brute_force_thermodynamics,
        "transfer_matrix": transfer_matrix_thermodynamics,
        "kaufman": kaufman_thermodynamics,
    }
    if method == "auto":
        check_size(L, None, "exact_thermodynamics")
        method = "transfer_matrix" if L <= MAX_TRANSFER_MAGNETIZATION_L else "kaufman"
    if method not in methods:
        raise ConfigError(f"unknown method {method!r}; choose one of 'auto', {', '.join(map(repr, methods))}")
    return methods[method](L, T, J)


def exact_log_prob(lattices: Tensor, T: float, J: float = 1.0) -> Tensor:
    """Exact normalised log-probability ``-E(s)/T - ln Z`` of configurations on an ``L x L`` torus.

    ``ln Z`` comes from Kaufman's formula, so this works for any square ``L >= 2``.

    :param lattices: ``(..., L, L)`` spins.
    :returns: float64 tensor of shape ``(...)``.
    """
    validate_lattices(lattices)
    L = lattices.shape[-1]
    if lattices.shape[-2] != L:
        raise DataError(f"exact_log_prob needs square L x L lattices, got {tuple(lattices.shape[-2:])}")
    check_size(L, None, "exact_log_prob")
    T = check_temperature(T)
    return -energy(lattices, check_exchange_coupling(J)) / T - kaufman_log_z(L, T, J)
