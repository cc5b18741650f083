"""Autocorrelation of Monte Carlo time series and the integrated autocorrelation time.

A time series has shape ``(n_steps,)`` (one chain) or ``(n_steps, n_chains)`` (independent chains of
equal length run side by side, time first, as produced by stacking sweeps). The integrated
autocorrelation time ``tau_int`` sets how far apart samples must be to count as independent and how
much a chain's correlations inflate the variance of its mean, ``Var(mean) = 2 tau_int sigma^2 / n``;
:mod:`vaezoo.ising.estimates` builds its error bars on it, and :func:`vaezoo.ising.chains.sample`
its thinning.

References
----------
A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, NATO ASI Series B 361, pp. 131-192 (1997).

N. Madras and A. D. Sokal, "The pivot algorithm: a highly efficient Monte Carlo method for the
self-avoiding walk", J. Stat. Phys. 50, 109 (1988) (automatic windowing, appendix C).
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.errors import ConfigError, DataError

__all__ = ["as_series", "autocorrelation_function", "windowed_tau", "integrated_autocorrelation_time"]


def as_series(series: Tensor) -> Tensor:
    """A checked float64 ``(n_steps, n_chains)`` view of a time series.

    :param series: ``(n_steps,)`` or ``(n_steps, n_chains)``, anything :func:`torch.as_tensor` takes.
    :raises vaezoo.errors.DataError: for another shape, fewer than 2 steps, or NaN/infinite values.
    """
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


def autocorrelation_function(series: Tensor) -> tuple[Tensor, Tensor]:
    """Chain-averaged normalised autocorrelation ``rho(t)`` and the within-chain variance.

    :param series: a checked ``(n_steps, n_chains)`` series (:func:`as_series`).
    :returns: ``(rho, variance)``: ``rho`` of shape ``(n_steps,)`` with ``rho(0) = 1`` (all zeros for a
        constant series), and the lag-0 autocovariance.

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


def windowed_tau(rho: Tensor, window_factor: float) -> float:
    """``tau_int`` from a normalised autocorrelation ``rho`` with Sokal's automatic window.

    See :func:`integrated_autocorrelation_time`, which checks its arguments and calls this.
    """
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
    rho, _ = autocorrelation_function(as_series(series))
    return windowed_tau(rho, float(window_factor))
