"""Kaufman's closed-form partition function of the finite ``L x L`` torus (any ``L``).

Derivatives of ``ln Z`` come from float64 autograd through a rescaled, smooth form of the formula.

References
----------
B. Kaufman, "Crystal statistics. II. Partition function evaluated by spinor analysis",
Phys. Rev. 76, 1232 (1949).

A. E. Ferdinand and M. E. Fisher, "Bounded and inhomogeneous Ising models. I. Specific-heat anomaly
of a finite lattice", Phys. Rev. 185, 832 (1969).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaezoo.errors import ConfigError
from vaezoo.ising.exact.common import DTYPE, ExactThermodynamics, check_size, ground_state
from vaezoo.ising.parameters import reduced_coupling

__all__ = ["kaufman_log_z", "kaufman_thermodynamics", "HIGH_TEMPERATURE_K"]

#: Up to this reduced coupling (``T >= 1e9 J``) Kaufman's values are replaced by the leading terms of
#: the high-temperature expansion ``Z = 2^N cosh^{2N} K sum_g tanh^{|g|} K`` over closed bond graphs
#: ``g``. For ``L >= 4`` the shortest closed graphs have 4 bonds (at most ``N + 2L`` of them), so
#: ``ln Z = N ln 2 + 2N ln cosh K + O(N K^4)``, ``E/N = -2J tanh K (1 + O(3 K^2))`` and
#: ``C/N = 2 K^2 / cosh^2 K (1 + O(K^2))``: exact to double precision here. The formula itself is not:
#: its derivatives are differences of terms of order ``1/K`` and ``1/K^2``, which lose every digit
#: and then overflow (``nan`` from ``K ~ 1e-150``).
HIGH_TEMPERATURE_K = 1e-9
_SERIES_MIN_L = 4  # below it the torus has closed graphs of 2 or 3 bonds, so the series needs more terms


def _high_temperature(L: int, K: float, T: float, J: float, what: str) -> ExactThermodynamics | None:
    if K > HIGH_TEMPERATURE_K:
        return None
    if L < _SERIES_MIN_L:
        raise ConfigError(
            f"{what} at T = {T!r} (K = J/T <= {HIGH_TEMPERATURE_K:g}) needs L >= {_SERIES_MIN_L}; "
            "for L = 2 or 3 use method='transfer_matrix' or 'brute_force'"
        )
    n_sites = L * L
    return ExactThermodynamics(
        L=L, T=float(T), J=float(J), method="kaufman",
        log_z=n_sites * (math.log(2.0) + 2.0 * math.log(math.cosh(K))),
        energy_per_site=-2.0 * J * math.tanh(K), heat_capacity_per_site=2.0 * (K / math.cosh(K)) ** 2,
    )


def _kaufman_log_z(L: int, K: Tensor) -> Tensor:
    """``ln Z`` of the ``L x L`` torus as a differentiable function of a float64 tensor ``K``.

    Ferdinand & Fisher's form of Kaufman's result (``m = n = L``):

    ``Z = 1/2 (2 sinh 2K)^{N/2} (Z_1 + Z_2 + Z_3 + Z_4)``,
    ``Z_1 = prod_{r=0}^{n-1} 2 cosh(m gamma_{2r+1} / 2)``, ``Z_2`` the same with ``sinh``,
    ``Z_3 = prod_{r=0}^{n-1} 2 cosh(m gamma_{2r} / 2)``, ``Z_4`` the same with ``sinh``,

    with ``cosh gamma_k = cosh 2K coth 2K - cos(pi k / n)`` (``gamma_k > 0``) for ``k >= 1`` and the
    signed ``gamma_0 = 2K + ln tanh K``, negative below ``T_c``, which makes ``Z_4`` negative there.

    The factors are huge, so each one is divided by ``exp(|x|)`` with ``|x|`` *detached*: a constant
    rescaling keeps every derivative exact and smooth (rescaling by ``exp(|x|)`` with the gradient
    attached would put a kink at ``gamma_0 = 0``, i.e. at ``T_c``), and the four products are then
    combined with a signed log-sum-exp.
    """
    n = L
    k = torch.arange(2 * n, dtype=DTYPE)
    two_k = 2.0 * K
    c = torch.cosh(two_k) / torch.tanh(two_k)  # >= 2, so the acosh argument exceeds 1 for k >= 1
    gamma_rest = torch.acosh(c - torch.cos(math.pi * k[1:] / n))
    gamma_0 = (two_k + torch.log(torch.tanh(K))).reshape(1)
    gamma = torch.cat([gamma_0, gamma_rest])
    x = 0.5 * L * gamma  # m gamma_k / 2 with m = L rows
    shift = x.detach().abs()
    up = torch.exp(x - shift)
    down = torch.exp(-x - shift)
    two_cosh, two_sinh = up + down, up - down  # 2 cosh(x) / e^|x|, 2 sinh(x) / e^|x|
    odd, even = slice(1, None, 2), slice(2, None, 2)
    # The gamma_0 factor is multiplied in separately: torch's prod backward divides by each factor,
    # and near T_c, where 2 sinh(x_0) ~ 0, its second derivative would then be a difference of two
    # numbers of order 1 / x_0^2 (wrong by O(1) at T = T_c). The other factors stay away from zero.
    scaled_terms = torch.stack(
        [
            two_cosh[odd].prod(),
            two_sinh[odd].prod(),
            two_cosh[0] * two_cosh[even].prod(),
            two_sinh[0] * two_sinh[even].prod(),
        ]
    )
    even_scale = shift[0] + shift[even].sum()
    log_scales = torch.stack([shift[odd].sum(), shift[odd].sum(), even_scale, even_scale])
    top = log_scales.max()
    total = (scaled_terms * torch.exp(log_scales - top)).sum()
    n_sites = L * L
    return -math.log(2.0) + 0.5 * n_sites * torch.log(2.0 * torch.sinh(two_k)) + top + torch.log(total)


def kaufman_log_z(L: int, T: float, J: float = 1.0) -> float:
    """Exact ``ln Z`` of the ``L x L`` torus from Kaufman's formula (any ``L >= 2``).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: exchange coupling ``> 0``.
    """
    check_size(L, None, "Kaufman's formula")
    k_value = reduced_coupling(T, J=J)
    limit = ground_state(L, k_value, T, J, "kaufman") or _high_temperature(
        L, k_value, T, J, "Kaufman's formula"
    )
    if limit is not None:
        return limit.log_z
    return float(_kaufman_log_z(L, torch.tensor(k_value, dtype=DTYPE)))


def kaufman_thermodynamics(L: int, T: float, J: float = 1.0) -> ExactThermodynamics:
    """``ln Z``, ``<E>/N`` and heat capacity per site from Kaufman's formula (any ``L >= 2``).

    ``<E> = -J d ln Z / dK`` and ``C = K^2 d^2 ln Z / dK^2`` are taken by float64 autograd through
    the formula, so they are exact to rounding. Magnetisation fields are ``None`` (the formula has no
    field term).

    :param L: lattice size.
    :param T: temperature ``> 0``.
    :param J: exchange coupling ``> 0``.
    """
    check_size(L, None, "Kaufman's formula")
    k_value = reduced_coupling(T, J=J)
    limit = ground_state(L, k_value, T, J, "kaufman", magnetization=False) or _high_temperature(
        L, k_value, T, J, "Kaufman's formula"
    )
    if limit is not None:
        return limit
    K = torch.tensor(k_value, dtype=DTYPE, requires_grad=True)
    with torch.enable_grad():
        log_z = _kaufman_log_z(L, K)
        (first,) = torch.autograd.grad(log_z, K, create_graph=True)
        (second,) = torch.autograd.grad(first, K)
    n_sites = L * L
    return ExactThermodynamics(
        L=L,
        T=float(T),
        J=float(J),
        method="kaufman",
        log_z=float(log_z.detach()),
        energy_per_site=float(-J * first.detach() / n_sites),
        heat_capacity_per_site=float(k_value**2 * second / n_sites),
    )
