"""Monte Carlo estimates and their error bars.

I.i.d. samples drawn from the exact L = 4 Boltzmann distribution check the estimators against exact
values within 4 standard errors; AR(1) series with a known autocorrelation time check the
autocorrelation machinery and that the standard errors are calibrated.
"""

import math

import pytest
import torch

from vaezoo.ising import autocorrelation as ac
from vaezoo.ising import estimates
from vaezoo.ising import exact as ex
from vaezoo.ising import observables as obs

N_SIGMA = 4.0  # tolerance in standard errors for statistical comparisons


# ------------------------------------------------------------------------------------------------
# Autocorrelation times and error calibration
# ------------------------------------------------------------------------------------------------


def _ar1(n_steps: int, n_chains: int, phi: float, generator: torch.Generator) -> torch.Tensor:
    """Stationary AR(1) chains: rho(t) = phi^t, tau_int = (1 + phi) / (2 (1 - phi)), unit variance."""
    noise = torch.randn(n_steps, n_chains, generator=generator, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[0] = noise[0]
    scale = math.sqrt(1 - phi * phi)
    for t in range(1, n_steps):
        x[t] = phi * x[t - 1] + scale * noise[t]
    return x


def test_tau_of_independent_samples_is_one_half():
    g = torch.Generator().manual_seed(0)
    tau = ac.integrated_autocorrelation_time(torch.randn(20_000, generator=g))
    assert 0.5 <= tau < 0.55


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_tau_of_ar1_process(phi):
    g = torch.Generator().manual_seed(1)
    x = _ar1(5_000, 16, phi, g)
    exact = (1 + phi) / (2 * (1 - phi))
    # Statistical error of tau with Sokal's window: ~ sqrt(2 (2M + 1) / n) tau for n samples.
    assert ac.integrated_autocorrelation_time(x) == pytest.approx(exact, rel=0.05)


def test_tau_of_constant_series():
    assert ac.integrated_autocorrelation_time(torch.ones(100)) == 0.5
    est = estimates.estimate_mean(torch.ones(100, 3))
    assert est.value == 1.0 and est.stderr == 0.0


def test_standard_errors_are_calibrated():
    # 400 independent AR(1) runs (tau_int = 4.5): the z-scores of their means should have unit spread.
    g = torch.Generator().manual_seed(2)
    x = _ar1(2_000, 400, 0.8, g)
    z = torch.tensor(
        [estimates.estimate_mean(x[:, k]).value / estimates.estimate_mean(x[:, k]).stderr for k in range(400)]
    )
    # The sample std of 400 unit normals is within ~0.035 of 1; allow for the small bias of
    # estimated tau at n = 2000 / 4.5 ~ 440 effective samples.
    assert 0.85 < float(z.std()) < 1.15
    assert abs(float(z.mean())) < N_SIGMA / math.sqrt(400)


def test_series_shape_errors():
    with pytest.raises(ValueError, match="n_steps"):
        estimates.estimate_mean(torch.ones(3, 3, 3))
    with pytest.raises(ValueError, match="at least 2 steps"):
        estimates.estimate_mean(torch.ones(1))
    with pytest.raises(ValueError, match="NaN"):
        estimates.estimate_mean(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="window_factor"):
        ac.integrated_autocorrelation_time(torch.ones(10), window_factor=0)
    with pytest.raises(ValueError, match="n_steps, L, L"):
        estimates.estimate_energy_per_site(torch.ones(4, 4))


# ------------------------------------------------------------------------------------------------
# Estimators against exact L = 4 values
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[2.0, ex.T_C, 3.0])
def exact_samples(request):
    """20,000 i.i.d. draws from the exact L = 4 Boltzmann distribution, with exact expectations."""
    T = request.param
    L = 4
    log_p = ex.brute_force_log_probs(L, T)
    states = ex.enumerate_states(L)
    g = torch.Generator().manual_seed(3)
    draws = torch.multinomial(log_p.exp(), 20_000, replacement=True, generator=g)
    p = log_p.exp()
    g_exact = (p.unsqueeze(1) * obs.two_point_correlation(states)).sum(0)
    return T, states[draws], ex.brute_force_thermodynamics(L, T), g_exact


def _within(est: estimates.Estimate, exact: float) -> bool:
    return abs(est.value - exact) <= N_SIGMA * est.stderr


def test_estimators_match_exact_values(exact_samples):
    T, samples, thermo, _ = exact_samples
    checks = [
        (estimates.estimate_energy_per_site(samples), thermo.energy_per_site),
        (estimates.estimate_abs_magnetization(samples), thermo.abs_magnetization),
        (estimates.estimate_magnetization_sq(samples), thermo.magnetization_sq),
        (estimates.estimate_binder_cumulant(samples), thermo.binder_cumulant),
        (estimates.estimate_heat_capacity_per_site(samples, T), thermo.heat_capacity_per_site),
    ]
    for est, exact in checks:
        assert _within(est, exact), (est, exact)
        assert est.tau_int < 0.75  # i.i.d. input
        assert 0 < est.stderr < 0.05 * abs(exact)  # the comparison has power


def test_correlation_function_matches_exact(exact_samples):
    _, samples, _, g_exact = exact_samples
    est = estimates.estimate_correlation_function(samples)
    assert torch.equal(est.distance, torch.arange(3))
    # <m> = 0 exactly, so the connected function is the plain one.
    assert bool((est.value - g_exact).abs().le(N_SIGMA * est.stderr).all()), (est, g_exact)
    # C(0) = 1 - <m>^2 has (almost) no fluctuation of its own.
    assert float(est.value[0]) == pytest.approx(1.0, abs=1e-3)


def test_estimators_accept_multiple_chains(exact_samples):
    _, samples, thermo, _ = exact_samples
    chains = samples.reshape(1000, 20, 4, 4)
    one = estimates.estimate_energy_per_site(samples)
    many = estimates.estimate_energy_per_site(chains)
    assert many.value == pytest.approx(one.value, abs=1e-12)
    assert many.stderr == pytest.approx(one.stderr, rel=0.1)
    assert _within(many, thermo.energy_per_site)


def test_binder_cumulant_limits():
    ordered = torch.ones(50, 4, 4)
    ordered[::2] = -1
    est = estimates.estimate_binder_cumulant(ordered)
    assert est.value == pytest.approx(2 / 3, abs=1e-15) and est.stderr < 1e-12
    with pytest.raises(ValueError, match="undefined"):
        stripes = torch.ones(10, 4, 4)
        stripes[:, :2] = -1
        estimates.estimate_binder_cumulant(stripes)
