"""The parameters of the 2D Ising model and their one set of checks.

``H(s) = -J sum_<ij> s_i s_j`` at temperature ``T`` (``k_B = 1``). Two couplings appear in the package,
and the names keep them apart:

* ``J``, the **exchange coupling**, an energy scale: ``energy(s, J)`` is ``H(s)``;
* ``K = J / T``, the **reduced coupling** (``beta J``), the only combination the Boltzmann weight
  ``exp(-H / T) = exp(K sum_<ij> s_i s_j)`` depends on; samplers and exact methods work with ``K``, and
  the block-spin model is conditioned on it.

Only the ferromagnet at positive temperature is handled, so ``J > 0``, ``T > 0`` and hence ``K > 0``
everywhere in :mod:`vaezoo.ising`.
"""

from __future__ import annotations

import math
import sys

from vaezoo.errors import ConfigError

__all__ = ["check_temperature", "check_exchange_coupling", "reduced_coupling", "check_int"]


def _is_finite_real(x: object) -> bool:
    # bool is an int subclass, but True as a temperature is a bug, not 1 K.
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


def check_temperature(T: float) -> float:
    """``T`` as a float.

    :raises vaezoo.errors.ConfigError: unless ``T`` is a finite real number ``> 0``.
    """
    if not _is_finite_real(T) or T <= 0:
        raise ConfigError(f"temperature T must be a finite number > 0, got {T!r}")
    return float(T)


def check_exchange_coupling(J: float) -> float:
    """The exchange coupling ``J`` as a float.

    :raises vaezoo.errors.ConfigError: unless ``J`` is a finite real number ``> 0`` (the ferromagnet;
        the exact solutions, the cluster sampler and the critical point
        :data:`~vaezoo.ising.exact.onsager.T_C` all assume it).
    """
    if not _is_finite_real(J) or J <= 0:
        raise ConfigError(
            f"exchange coupling J must be a finite number > 0 (only the ferromagnet is handled), got {J!r}"
        )
    return float(J)


def reduced_coupling(T: float | None = None, K: float | None = None, *, J: float = 1.0) -> float:
    """The reduced coupling ``K = J / T`` from exactly one of ``T`` or ``K``, checked to be ``> 0``.

    :param T: temperature ``> 0``; then ``K = J / T``.
    :param K: the reduced coupling itself, returned as a float once checked.
    :param J: exchange coupling ``> 0``, used with ``T`` only.
    :raises vaezoo.errors.ConfigError: if both or neither of ``T`` and ``K`` are given, if ``J`` is given
        with ``K``, or if a value is out of range.
    """
    if (T is None) == (K is None):
        raise ConfigError("give exactly one of the temperature T or the reduced coupling K = J/T")
    if K is None:
        # J is checked first, as every caller did before the checks were gathered here.
        J = check_exchange_coupling(J)
        K = J / check_temperature(T)
        if not math.isfinite(K):  # a subnormal T
            raise ConfigError(
                f"temperature T = {T!r} is too small: K = J/T overflows a double; T must be > "
                f"{J / sys.float_info.max:.3g} J"
            )
        return K
    if J != 1.0:
        raise ConfigError("the exchange coupling J goes with the temperature T, not with K = J/T")
    if not _is_finite_real(K) or K <= 0:
        raise ConfigError(
            f"reduced coupling K = J/T must be a finite number > 0 (temperature T > 0), got {K!r}"
        )
    return float(K)


def check_int(value: int, name: str, minimum: int = 1) -> int:
    """``value`` unchanged if it is an ``int >= minimum`` (not a bool).

    :raises vaezoo.errors.ConfigError: otherwise, naming the parameter ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value
