"""Observables of 2D Ising configurations and their Monte Carlo estimates with honest error bars.

Conventions (shared by the whole :mod:`vaezoo.ising` package): spins are ``+1``/``-1`` on an
``L x L`` torus, ``H(s) = -J sum_<ij> s_i s_j`` over nearest-neighbour bonds (each site owns the bond
to its right and the bond below it, so there are ``2N`` bonds, ``N = L^2``), magnetisation is per site,
``m = (1/N) sum_i s_i``. Lattices are tensors of shape ``(..., L, L)``.

Two kinds of functions live here:

* per-configuration observables (``energy``, ``magnetization``, ``two_point_correlation``, ...) that
  map a batch of lattices ``(..., L, L)`` to a tensor of shape ``(...)``;
* estimators (``estimate_energy_per_site``, ``estimate_binder_cumulant``, ...) that take a Markov
  chain output and return the mean with a standard error that accounts for autocorrelation.

Estimators read their input as a time series: lattices of shape ``(n_steps, L, L)`` are one chain,
``(n_steps, n_chains, L, L)`` are independent chains run side by side (time first, as produced by
stacking sweeps). Samples that are already independent (e.g. thinned output of
:func:`vaezoo.ising.samplers.sample`) are simply a series whose integrated autocorrelation time is
``~1/2``, so the same functions apply.

Error bars use the integrated autocorrelation time ``tau_int`` with Sokal's automatic window:
``Var(mean) = 2 tau_int sigma^2 / n``. Non-linear estimators (Binder cumulant, connected correlations,
heat capacity) use the delta method on the time series (the "Gamma method"): the series is projected
onto the gradient of the estimator at the sample means, and the error of that linear combination is
computed like that of a plain mean, so the autocorrelation of the combination, not of its parts,
sets the error.

References
----------
A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, NATO ASI Series B 361, pp. 131-192 (1997).

N. Madras and A. D. Sokal, "The pivot algorithm: a highly efficient Monte Carlo method for the
self-avoiding walk", J. Stat. Phys. 50, 109 (1988) (automatic windowing, appendix C).

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

from vaezoo.errors import ConfigError, DataError

__all__ = [
    "Estimate",
    "CorrelationEstimate",
    "validate_lattices",
    "energy",
    "energy_per_site",
    "magnetization",
    "abs_magnetization",
    "magnetization_sq",
    "two_point_correlation",
    "integrated_autocorrelation_time",
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


def _check_coupling(J: float) -> float:
    if isinstance(J, bool) or not isinstance(J, (int, float)) or not math.isfinite(J):
        raise ConfigError(f"coupling J must be a finite real number, got {J!r}")
    return float(J)


def _bond_sum(spins: Tensor) -> Tensor:
    # Each site pairs with its right and lower neighbour, so every torus bond is counted once (for
    # L = 2 the two bonds joining the same pair of sites are both counted, as on the torus graph).
    right = torch.roll(spins, shifts=-1, dims=-1)
    down = torch.roll(spins, shifts=-1, dims=-2)
    return (spins * (right + down)).sum(dim=(-2, -1))


def energy(lattices: Tensor, J: float = 1.0) -> Tensor:
    """Total energy ``H(s) = -J sum_<ij> s_i s_j`` of each configuration on the torus.

    :param lattices: ``(..., L, L)`` tensor of ``+1``/``-1`` spins.
    :param J: coupling constant.
    :returns: float64 tensor of shape ``(...)``.
    """
    return -_check_coupling(J) * _bond_sum(_as_spins(lattices))


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


def _as_series(series: Tensor) -> Tensor:
    """Return a float64 ``(n_steps, n_chains)`` view of a time series."""
    if not isinstance(series, Tensor):
        series = torch.as_tensor(series)
    if series.dim() == 1:
        series = series.unsqueeze(1)
    if series.dim() != 2:
        raise DataError(
            f"a time series must have shape (n_steps,) or (n_steps, n_chains), got {tuple(series.shape)}"
        )
    if series.shape[0] < 2 or series.shape[1] < 1:
        raise DataError(f"a time series needs at least 2 steps and 1 chain, got shape {tuple(series.shape)}")
    series = series.to(torch.float64)
    if not bool(torch.isfinite(series).all()):
        raise DataError("the time series contains NaN or infinite values")
    return series


def _autocorrelation(series: Tensor) -> tuple[Tensor, Tensor]:
    """Chain-averaged normalised autocorrelation ``rho(t)`` and the within-chain variance.

    Each chain is centred on its own mean; the (biased, 1/n) autocovariances of all chains are
    averaged before normalising, which weighs chains equally and keeps ``rho`` positive definite.
    """
    n = series.shape[0]
    centred = series - series.mean(dim=0, keepdim=True)
    # Zero-padding to 2n turns the FFT's circular correlation into the linear one.
    spectrum = torch.fft.rfft(centred, n=2 * n, dim=0)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * n, dim=0)[:n] / n
    acov = acov.mean(dim=1)
    variance = acov[0]
    if variance <= 0:
        return torch.zeros_like(acov), variance
    return acov / variance, variance


def _windowed_tau(rho: Tensor, window_factor: float) -> float:
    tau = 0.5 + torch.cumsum(rho[1:], dim=0)
    if tau.numel() == 0:
        return 0.5
    lags = torch.arange(1, rho.shape[0], dtype=torch.float64)
    ok = lags >= window_factor * tau
    if not bool(ok.any()):
        # The window never closes: the run is too short to resolve tau. The full sum is the best
        # (under-)estimate available, and it comes out comparable to the run length, which is the
        # caller's cue to run longer.
        return max(float(tau[-1]), 0.5)
    window = int(torch.nonzero(ok)[0, 0])
    # Noise (or genuine anticorrelation) can push the windowed sum below 1/2; clamping at the
    # independent-sample value can only make error bars conservative, never optimistic.
    return max(float(tau[window]), 0.5)


def integrated_autocorrelation_time(series: Tensor, window_factor: float = 6.0) -> float:
    """Integrated autocorrelation time with Sokal's automatic windowing.

    ``tau_int(M) = 1/2 + sum_{t=1}^{M} rho(t)``, and the window ``M`` is the smallest one with
    ``M >= window_factor * tau_int(M)``. This convention gives ``tau_int = 1/2`` for independent
    samples and ``Var(mean) = 2 tau_int sigma^2 / n``; to obtain roughly independent samples, keep every
    ``ceil(2 tau_int)``-th one. The window trades the bias of truncating ``rho`` (small once
    ``M >> tau``) against the variance of summing its noise (which grows like ``M``); ``c ~ 6`` is
    Sokal's recommendation for roughly exponential decay. The estimate is only reliable when the run
    is much longer than ``tau_int`` (Sokal: ``n >~ 1000 tau_int``).

    :param series: ``(n_steps,)`` or ``(n_steps, n_chains)``; chains must be independent and of the
        same length. Each chain is centred on its own mean.
    :param window_factor: Sokal's ``c``.
    :returns: ``tau_int`` in units of the series' step, clamped below at ``0.5`` (so a constant or
        anticorrelated series reports ``0.5``).
    """
    if (
        isinstance(window_factor, bool)
        or not isinstance(window_factor, (int, float))
        or not window_factor > 0
    ):
        raise ConfigError(f"window_factor must be a positive number, got {window_factor!r}")
    rho, _ = _autocorrelation(_as_series(series))
    return _windowed_tau(rho, float(window_factor))


def _estimate_from_series(series: Tensor, value: float | None = None) -> Estimate:
    series = _as_series(series)
    rho, variance = _autocorrelation(series)
    tau = _windowed_tau(rho, 6.0)
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
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not math.isfinite(T) or T <= 0:
        raise ConfigError(f"temperature T must be a finite number > 0, got {T!r}")
    e = energy_per_site(lattices, J)
    n_sites = lattices.shape[-1] * lattices.shape[-2]
    scale = n_sites / float(T) ** 2
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
