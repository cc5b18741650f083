"""Monte Carlo estimates of Ising observables with error bars that account for autocorrelation.

Estimators read their input as a time series: lattices of shape ``(n_steps, L, L)`` are one chain,
``(n_steps, n_chains, L, L)`` are independent chains run side by side (time first, as produced by
stacking sweeps). Samples that are already independent (e.g. thinned output of
:func:`vaezoo.ising.chains.sample`) are simply a series whose integrated autocorrelation time is
``~1/2``, so the same functions apply.

Error bars use the integrated autocorrelation time ``tau_int`` with Sokal's automatic window
(:mod:`vaezoo.ising.autocorrelation`): ``Var(mean) = 2 tau_int sigma^2 / n``. Non-linear estimators
(Binder cumulant, connected correlations, heat capacity) use the delta method on the time series (the
"Gamma method"): the series is projected onto the gradient of the estimator at the sample means, and
the error of that linear combination is computed like that of a plain mean, so the autocorrelation of
the combination, not of its parts, sets the error.

References
----------
A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, NATO ASI Series B 361, pp. 131-192 (1997).

U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156, 143 (2004)
(delta method for derived quantities).

K. Binder, "Finite size scaling analysis of Ising model block distribution functions",
Z. Phys. B 43, 119 (1981).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vaezoo.errors import DataError
from vaezoo.ising.autocorrelation import as_series, autocorrelation_function, windowed_tau
from vaezoo.ising.observables import (
    abs_magnetization,
    energy_per_site,
    magnetization,
    magnetization_sq,
    two_point_correlation,
)
from vaezoo.ising.parameters import check_temperature

__all__ = [
    "Estimate",
    "CorrelationEstimate",
    "estimate_mean",
    "estimate_energy_per_site",
    "estimate_abs_magnetization",
    "estimate_magnetization_sq",
    "estimate_binder_cumulant",
    "estimate_heat_capacity_per_site",
    "estimate_correlation_function",
]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate.

    :ivar value: point estimate.
    :ivar stderr: standard error, ``sqrt(2 tau_int sigma^2 / n)`` with ``n`` the total number of
        measurements over all chains.
    :ivar tau_int: integrated autocorrelation time (Sokal's convention, ``1/2`` for independent
        samples) of the series whose mean gives ``value`` (or of its delta-method projection).
    """

    value: float
    stderr: float
    tau_int: float


@dataclass(frozen=True)
class CorrelationEstimate:
    """Connected two-point correlation ``C(r)`` for ``r = 0, ..., L // 2`` with errors.

    :ivar distance: the separations ``r`` (int64 tensor).
    :ivar value: ``C(r)`` (float64 tensor).
    :ivar stderr: standard errors of ``value``.
    :ivar tau_int: integrated autocorrelation time of each ``C(r)`` projection.
    """

    distance: Tensor
    value: Tensor
    stderr: Tensor
    tau_int: Tensor


def _estimate_from_series(series: Tensor, value: float | None = None) -> Estimate:
    series = as_series(series)
    rho, variance = autocorrelation_function(series)
    tau = windowed_tau(rho, 6.0)
    stderr = math.sqrt(max(2.0 * tau * float(variance) / series.numel(), 0.0))
    mean = float(series.mean()) if value is None else value
    return Estimate(value=mean, stderr=stderr, tau_int=tau)


def estimate_mean(series: Tensor) -> Estimate:
    """Mean of a (possibly autocorrelated) series with its standard error.

    :param series: ``(n_steps,)`` or ``(n_steps, n_chains)``.
    """
    return _estimate_from_series(series)


def _check_time_shape(lattices: Tensor) -> None:
    if lattices.dim() not in (3, 4):
        raise DataError(
            "estimators take lattices of shape (n_steps, L, L) or (n_steps, n_chains, L, L), "
            f"got {tuple(lattices.shape)}"
        )


def estimate_energy_per_site(lattices: Tensor, J: float = 1.0) -> Estimate:
    """``<E>/N`` with its autocorrelation-aware standard error.

    :param lattices: ``(n_steps, L, L)`` or ``(n_steps, n_chains, L, L)``.
    """
    _check_time_shape(lattices)
    return _estimate_from_series(energy_per_site(lattices, J))


def estimate_abs_magnetization(lattices: Tensor) -> Estimate:
    """``<|m|>`` with its standard error; input as for :func:`estimate_energy_per_site`."""
    _check_time_shape(lattices)
    return _estimate_from_series(abs_magnetization(lattices))


def estimate_magnetization_sq(lattices: Tensor) -> Estimate:
    """``<m^2>`` with its standard error; input as for :func:`estimate_energy_per_site`."""
    _check_time_shape(lattices)
    return _estimate_from_series(magnetization_sq(lattices))


def estimate_binder_cumulant(lattices: Tensor) -> Estimate:
    """Binder cumulant ``U4 = 1 - <m^4> / (3 <m^2>^2)`` with a delta-method standard error.

    ``U4 -> 2/3`` deep in the ordered phase and ``-> 0`` in the disordered phase of a large system.

    :param lattices: ``(n_steps, L, L)`` or ``(n_steps, n_chains, L, L)``.
    """
    _check_time_shape(lattices)
    m2 = magnetization_sq(lattices)
    m4 = m2.square()
    a, b = float(m4.mean()), float(m2.mean())
    if b == 0.0:
        raise DataError("the Binder cumulant is undefined when every sample has m = 0")
    value = 1.0 - a / (3.0 * b * b)
    # Gradient of U4(<m^4>, <m^2>) at the sample means.
    projected = (-1.0 / (3.0 * b * b)) * m4 + (2.0 * a / (3.0 * b**3)) * m2
    return _estimate_from_series(projected, value=value)


def estimate_heat_capacity_per_site(lattices: Tensor, T: float, J: float = 1.0) -> Estimate:
    """Heat capacity per site ``c = N (<e^2> - <e>^2) / T^2`` (``k_B = 1``, ``e = E/N``).

    :param lattices: ``(n_steps, L, L)`` or ``(n_steps, n_chains, L, L)``.
    :param T: the temperature the samples were drawn at.
    """
    _check_time_shape(lattices)
    T = check_temperature(T)
    e = energy_per_site(lattices, J)
    n_sites = lattices.shape[-1] * lattices.shape[-2]
    scale = n_sites / T**2
    mean_e = float(e.mean())
    value = scale * float((e - mean_e).square().mean())
    projected = scale * (e.square() - 2.0 * mean_e * e)
    return _estimate_from_series(projected, value=value)


def estimate_correlation_function(lattices: Tensor) -> CorrelationEstimate:
    """Connected correlation ``C(r) = <s_i s_{i+r}> - <m>^2`` along the axes, ``r = 0..L//2``.

    ``<m>`` is the signed magnetisation, so in a finite system that samples both ordered states the
    subtraction is ~0 and ``C(r)`` tends to ``<m^2>``-like plateaus below ``T_c``; that is the standard
    connected function of the symmetric finite-volume ensemble.

    :param lattices: ``(n_steps, L, L)`` or ``(n_steps, n_chains, L, L)`` square lattices.
    """
    _check_time_shape(lattices)
    g = two_point_correlation(lattices)  # (..., R)
    m = magnetization(lattices)  # (...)
    mean_m = float(m.mean())
    n_r = g.shape[-1]
    values, errors, taus = [], [], []
    for r in range(n_r):
        g_r = g[..., r]
        value = float(g_r.mean()) - mean_m**2
        est = _estimate_from_series(g_r - 2.0 * mean_m * m, value=value)
        values.append(est.value)
        errors.append(est.stderr)
        taus.append(est.tau_int)
    return CorrelationEstimate(
        distance=torch.arange(n_r, dtype=torch.int64),
        value=torch.tensor(values, dtype=torch.float64),
        stderr=torch.tensor(errors, dtype=torch.float64),
        tau_int=torch.tensor(taus, dtype=torch.float64),
    )
