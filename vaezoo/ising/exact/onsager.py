"""The infinite square lattice: Onsager's free energy, energy and heat capacity, Yang's magnetisation.

References
----------
L. Onsager, "Crystal statistics. I. A two-dimensional model with an order-disorder transition",
Phys. Rev. 65, 117 (1944).

C. N. Yang, "The spontaneous magnetization of a two-dimensional Ising model",
Phys. Rev. 85, 808 (1952).

K. Huang, *Statistical Mechanics*, 2nd ed., Wiley (1987), ch. 15 (Onsager's free energy and energy
in the one-dimensional elliptic-integral form used here; the heat capacity is their ``T``-derivative
and is checked numerically in the tests).
"""

from __future__ import annotations

import math

from scipy import integrate, special

from vaezoo.ising.exact.common import GROUND_STATE_K
from vaezoo.ising.parameters import check_temperature, reduced_coupling

__all__ = [
    "T_C",
    "BETA_C",
    "onsager_log_z_per_site",
    "onsager_free_energy_per_site",
    "onsager_energy_per_site",
    "onsager_entropy_per_site",
    "onsager_heat_capacity_per_site",
    "yang_magnetization",
]

#: Critical temperature of the square-lattice ferromagnet for ``J = 1`` (``T_c = 2 J / ln(1 + sqrt 2)``).
T_C: float = 2.0 / math.log1p(math.sqrt(2.0))
#: Critical coupling ``K_c = beta_c J = ln(1 + sqrt 2) / 2`` (the inverse of :data:`T_C` for ``J = 1``).
BETA_C: float = 0.5 * math.log1p(math.sqrt(2.0))


def _elliptic_modulus_sq(K: float) -> float:
    # kappa = 2 sinh 2K / cosh^2 2K <= 1, with equality exactly at K_c.
    return min((2.0 * math.sinh(2.0 * K) / math.cosh(2.0 * K) ** 2) ** 2, 1.0)


def onsager_log_z_per_site(T: float, J: float = 1.0) -> float:
    """Onsager's ``-beta f = lim ln Z / N`` for the infinite square lattice.

    ``-beta f = ln(2 cosh 2K) + (1/pi) int_0^{pi/2} ln[(1 + sqrt(1 - kappa^2 sin^2 t)) / 2] dt`` with
    ``kappa = 2 sinh 2K / cosh^2 2K``. At ``K_c`` it equals ``ln 2 / 2 + 2 G / pi`` (``G`` Catalan's).
    """
    K = reduced_coupling(T, J=J)
    if K >= GROUND_STATE_K:  # the ground state to double precision (see GROUND_STATE_K); no overflow
        return 2.0 * K
    k2 = _elliptic_modulus_sq(K)

    def integrand(t: float) -> float:
        return math.log(0.5 * (1.0 + math.sqrt(max(1.0 - k2 * math.sin(t) ** 2, 0.0))))

    value, _ = integrate.quad(integrand, 0.0, 0.5 * math.pi, epsabs=1e-14, epsrel=1e-13, limit=200)
    return math.log(2.0 * math.cosh(2.0 * K)) + value / math.pi


def onsager_free_energy_per_site(T: float, J: float = 1.0) -> float:
    """Helmholtz free energy per site ``f = -T lim ln Z / N`` of the infinite lattice."""
    return -check_temperature(T) * onsager_log_z_per_site(T, J)


def onsager_energy_per_site(T: float, J: float = 1.0) -> float:
    """Internal energy per site of the infinite lattice.

    ``u = -J coth 2K [1 + (2/pi) (2 tanh^2 2K - 1) K_1(kappa)]`` with ``K_1`` the complete elliptic
    integral of the first kind; at ``K_c`` the prefactor of the divergent ``K_1`` vanishes and
    ``u = -sqrt(2) J``.
    """
    K = reduced_coupling(T, J=J)
    if K >= GROUND_STATE_K:
        return -2.0 * J
    k2 = _elliptic_modulus_sq(K)
    prefactor = 2.0 * math.tanh(2.0 * K) ** 2 - 1.0
    elliptic_term = 0.0 if k2 >= 1.0 else prefactor * special.ellipk(k2)
    return -J / math.tanh(2.0 * K) * (1.0 + 2.0 / math.pi * elliptic_term)


def onsager_entropy_per_site(T: float, J: float = 1.0) -> float:
    """Entropy per site ``s = -beta f + u / T`` of the infinite lattice (``k_B = 1``)."""
    if reduced_coupling(T, J=J) >= GROUND_STATE_K:
        return 0.0  # the two ground states carry no entropy per site; 2K - 2K would lose it to rounding
    return onsager_log_z_per_site(T, J) + onsager_energy_per_site(T, J) / check_temperature(T)


def onsager_heat_capacity_per_site(T: float, J: float = 1.0) -> float:
    """Heat capacity per site of the infinite lattice (``k_B = 1``); ``inf`` at ``T_c``.

    ``c = (4/pi) (K coth 2K)^2 {K_1 - E_1 - (1 - tanh^2 2K) [pi/2 + (2 tanh^2 2K - 1) K_1]}`` with
    ``K_1``, ``E_1`` the complete elliptic integrals of modulus ``kappa`` (the ``K``-derivative of
    :func:`onsager_energy_per_site`; the tests check it against a numerical derivative and large-``L``
    Kaufman values).
    """
    K = reduced_coupling(T, J=J)
    if K >= GROUND_STATE_K:
        return 0.0
    k2 = _elliptic_modulus_sq(K)
    if k2 >= 1.0:
        return math.inf
    t2 = math.tanh(2.0 * K) ** 2
    k1, e1 = special.ellipk(k2), special.ellipe(k2)
    bracket = k1 - e1 - (1.0 - t2) * (0.5 * math.pi + (2.0 * t2 - 1.0) * k1)
    return 4.0 / math.pi * (K / math.tanh(2.0 * K)) ** 2 * bracket


def yang_magnetization(T: float, J: float = 1.0) -> float:
    """Yang's spontaneous magnetisation ``m_0 = (1 - sinh^{-4} 2K)^{1/8}`` below ``T_c``, else 0."""
    K = reduced_coupling(T, J=J)
    if K >= GROUND_STATE_K:
        return 1.0
    sinh_2k = math.sinh(2.0 * K)
    if sinh_2k <= 1.0:  # sinh 2K_c = 1
        return 0.0
    return (1.0 - sinh_2k**-4) ** 0.125
