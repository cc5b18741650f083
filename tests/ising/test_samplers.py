"""Monte Carlo samplers against exact results.

Every statistical check compares an estimate with an exact value and allows ``N_SIGMA`` standard
errors, where the standard error includes the integrated autocorrelation time of the chain
(:func:`vaezoo.ising.estimates.estimate_mean`). Each test also asserts that the run spans many
autocorrelation times (so the error bar is trustworthy) and that the error bar is small compared
with the value (so the test has power). All randomness is seeded.
"""

import math

import pytest
import torch
from scipy import stats

from vaezoo.ising import chains, estimates, kernels, sampling, swendsen_wang
from vaezoo.ising import exact as ex
from vaezoo.ising import observables as obs

N_SIGMA = 4.0
N_CHAINS = 64
BURN_IN = 300  # sweeps; > 20 tau for every (method, L, T) below, where tau <~ 15 sweeps
# Sweeps measured per chain: the local kernels are cheap per sweep, Swendsen-Wang decorrelates faster.
N_SWEEPS = {"heat_bath": 2000, "metropolis": 2000, "swendsen_wang": 800}


@pytest.fixture(autouse=True)
def _single_thread():
    """Samplers run many small ops; on a shared CPU torch's intra-op threads only add contention."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _run(method: str, L: int, T: float, n_sweeps: int, seed: int) -> chains.ChainTrace:
    g = torch.Generator().manual_seed(seed)
    # Ordered starts for Metropolis avoid its deterministic dE = 0 cycles (see vaezoo.ising.kernels).
    if T < ex.T_C or method == "metropolis":
        start = kernels.ordered_lattices(N_CHAINS, L)
    else:
        start = kernels.random_lattices(N_CHAINS, L, generator=g)
    burnt = chains.run_chains(start, T, BURN_IN, generator=g, method=method, record=False)
    return chains.run_chains(burnt.lattices, T, n_sweeps, generator=g, method=method)


def _assert_matches(series: torch.Tensor, exact: float, what: str) -> None:
    est = estimates.estimate_mean(series)
    n_per_chain = series.shape[0]
    assert n_per_chain >= 50 * est.tau_int, f"{what}: run too short for tau = {est.tau_int:.1f}"
    assert est.stderr < 0.01 * abs(exact), f"{what}: error bar {est.stderr:.2g} too large to test anything"
    z = (est.value - exact) / est.stderr
    assert abs(z) <= N_SIGMA, f"{what}: {est.value:.6f} vs exact {exact:.6f} ({z:+.1f} standard errors)"


@pytest.mark.parametrize("method", chains.METHODS)
@pytest.mark.parametrize("L", [4, 8])
@pytest.mark.parametrize("T", [2.0, ex.T_C])
def test_sampler_matches_exact_energy_and_m2(method, L, T):
    trace = _run(method, L, T, N_SWEEPS[method], seed=2024)
    exact = ex.transfer_matrix_thermodynamics(L, T)
    _assert_matches(trace.energy_per_site, exact.energy_per_site, f"{method} L={L} T={T:.3f} E/N")
    _assert_matches(trace.magnetization_sq, exact.magnetization_sq, f"{method} L={L} T={T:.3f} m^2")


@pytest.mark.slow
@pytest.mark.parametrize("method", chains.METHODS)
@pytest.mark.parametrize("T", [2.0, ex.T_C, 3.0])
def test_sampler_matches_kaufman_energy_l16(method, T):
    trace = _run(method, 16, T, 10_000 if method != "swendsen_wang" else 3000, seed=16)
    exact = ex.kaufman_thermodynamics(16, T)
    _assert_matches(trace.energy_per_site, exact.energy_per_site, f"{method} L=16 T={T:.3f} E/N")


def _chi2_on_2x2(method: str, start: torch.Tensor, allowed: torch.Tensor, seed: int) -> tuple[float, int]:
    """Chi-square of the final states of independent chains against the exact Boltzmann law
    restricted to the ``allowed`` states (a bool mask over the 16 states of the 2 x 2 torus)."""
    T = 2.5
    g = torch.Generator().manual_seed(seed)
    final = chains.run_chains(start, T, 30, generator=g, method=method, record=False).lattices
    counts = torch.bincount(ex.state_index(final), minlength=16).to(torch.float64)
    assert float(counts[~allowed].sum()) == 0.0
    p = ex.brute_force_log_probs(2, T).exp() * allowed
    expected = start.shape[0] * p / p.sum()
    assert float(expected[allowed].min()) > 5  # chi-square approximation valid
    chi2 = float(((counts - expected)[allowed] ** 2 / expected[allowed]).sum())
    return chi2, int(allowed.sum()) - 1


@pytest.mark.parametrize("method", ["heat_bath", "swendsen_wang"])
def test_sampler_reproduces_full_distribution_l2(method):
    # 2 x 2 torus (each pair of sites joined by two bonds): the empirical distribution of all 16
    # states over 20,000 independent chains against the exact Boltzmann probabilities.
    g = torch.Generator().manual_seed(6)
    start = kernels.random_lattices(20_000, 2, generator=g)
    chi2, dof = _chi2_on_2x2(method, start, torch.ones(16, dtype=torch.bool), seed=7)
    assert chi2 < stats.chi2.isf(1e-4, df=dof), chi2


def test_metropolis_stripe_states_on_2x2_are_a_closed_deterministic_cycle():
    # The documented non-ergodicity: in a stripe state every site has a zero local field, so every
    # proposal has dE = 0 and is accepted, and the stripes cycle through each other forever.
    stripes = ex.enumerate_states(2)[[3, 5, 10, 12]]
    assert torch.equal(obs.energy(stripes), torch.zeros(4, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    current = stripes.clone()
    for _ in range(5):
        current = kernels.metropolis_sweep(current, 2.5, generator=g)
        assert set(ex.state_index(current).tolist()) == {3, 5, 10, 12}
    # Started from the ordered state the chain never meets them, and samples the Boltzmann law
    # conditioned on the other 12 states.
    allowed = torch.ones(16, dtype=torch.bool)
    allowed[[3, 5, 10, 12]] = False
    chi2, dof = _chi2_on_2x2("metropolis", kernels.ordered_lattices(20_000, 2), allowed, seed=8)
    assert chi2 < stats.chi2.isf(1e-4, df=dof), chi2


# ------------------------------------------------------------------------------------------------
# Swendsen-Wang cluster labelling
# ------------------------------------------------------------------------------------------------


def _reference_labels(right: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """Breadth-first search on one torus; label = smallest flat index in the component."""
    L = right.shape[0]
    neighbours: dict[int, list[int]] = {k: [] for k in range(L * L)}
    for i in range(L):
        for j in range(L):
            a = i * L + j
            if right[i, j]:
                b = i * L + (j + 1) % L
                neighbours[a].append(b)
                neighbours[b].append(a)
            if down[i, j]:
                b = ((i + 1) % L) * L + j
                neighbours[a].append(b)
                neighbours[b].append(a)
    labels = [-1] * (L * L)
    for root in range(L * L):
        if labels[root] >= 0:
            continue
        labels[root] = root
        frontier = [root]
        while frontier:
            site = frontier.pop()
            for other in neighbours[site]:
                if labels[other] < 0:
                    labels[other] = root
                    frontier.append(other)
    return torch.tensor(labels).reshape(L, L)


@pytest.mark.parametrize("L", [2, 3, 5, 8])
@pytest.mark.parametrize("p", [0.3, 0.5, 0.7])
def test_cluster_labels_match_breadth_first_search(L, p):
    g = torch.Generator().manual_seed(11)
    right = torch.rand(3, 4, L, L, generator=g) < p  # two batch dimensions
    down = torch.rand(3, 4, L, L, generator=g) < p
    labels = swendsen_wang.cluster_labels(right, down)
    assert labels.shape == (3, 4, L, L) and labels.dtype == torch.int64
    for a in range(3):
        for b in range(4):
            assert torch.equal(labels[a, b], _reference_labels(right[a, b], down[a, b]))


def test_cluster_labels_wrap_around_the_torus():
    L = 6
    right = torch.zeros(L, L, dtype=torch.bool)
    down = torch.zeros(L, L, dtype=torch.bool)
    right[2, L - 1] = True  # joins (2, 5) to (2, 0) across the boundary
    down[L - 1, 3] = True  # joins (5, 3) to (0, 3)
    labels = swendsen_wang.cluster_labels(right, down)
    assert labels[2, L - 1] == labels[2, 0] == 2 * L
    assert labels[L - 1, 3] == labels[0, 3] == 3
    assert int(labels.unique().numel()) == L * L - 2
    assert bool((swendsen_wang.cluster_labels(~down, ~down) == 0).all())  # everything open: one cluster


def test_swendsen_wang_is_single_spin_flips_at_infinite_temperature():
    # p_bond = 1 - exp(-2K) -> 0: every site is its own cluster and flips with probability 1/2.
    g = torch.Generator().manual_seed(5)
    s = torch.ones(4000, 4, 4)
    out = swendsen_wang.swendsen_wang_sweep(s, 1e12, generator=g)
    frac = float((out == -1).to(torch.float64).mean())
    assert abs(frac - 0.5) < N_SIGMA * 0.5 / math.sqrt(out.numel())


# ------------------------------------------------------------------------------------------------
# sample() and chain helpers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", chains.METHODS)
def test_sample_returns_decorrelated_equilibrium_lattices(method):
    L, T = 4, 2.5
    lattices, info = sampling.sample(L, T, 4000, method=method, seed=99, return_info=True)
    assert lattices.shape == (4000, L, L) and lattices.dtype == torch.float32
    obs.validate_lattices(lattices)
    assert info.thin == max(1, math.ceil(2 * info.tau.max))
    assert info.burn_in >= 20 * info.tau.max
    exact = ex.transfer_matrix_thermodynamics(L, T)
    # Thinning makes the output (nearly) independent, so these are plain i.i.d. error bars.
    for est, value in [
        (estimates.estimate_energy_per_site(lattices), exact.energy_per_site),
        (estimates.estimate_magnetization_sq(lattices), exact.magnetization_sq),
        (estimates.estimate_abs_magnetization(lattices), exact.abs_magnetization),
    ]:
        assert est.tau_int < 1.0
        assert abs(est.value - value) <= N_SIGMA * est.stderr, (method, est, value)


def test_sample_is_reproducible_and_seed_dependent():
    a = sampling.sample(6, 2.3, 50, seed=1, burn_in=20, thin=2)
    b = sampling.sample(6, 2.3, 50, seed=1, burn_in=20, thin=2)
    c = sampling.sample(6, 2.3, 50, seed=2, burn_in=20, thin=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    assert torch.equal(
        sampling.sample(6, 2.3, 10, generator=g1, burn_in=5, thin=1, method="metropolis"),
        sampling.sample(6, 2.3, 10, generator=g2, burn_in=5, thin=1, method="metropolis"),
    )


def test_sample_explicit_schedule_and_odd_l():
    lattices, info = sampling.sample(5, 3.0, 10, seed=0, burn_in=7, thin=3, n_chains=4, return_info=True)
    assert lattices.shape == (10, 5, 5)
    assert (info.burn_in, info.thin, info.n_chains, info.tau) == (7, 3, 4, None)
    assert info.n_sweeps == 7 + 3 * 3  # ceil(10 / 4) samples per chain


def test_symmetrize_restores_spin_flip_symmetry():
    # Below T_c the chains start ordered and a local kernel never tunnels on this time scale, so
    # without the random global flip every sample has m > 0.
    kwargs = {"method": "heat_bath", "seed": 4, "burn_in": 50, "thin": 2}
    plain = sampling.sample(8, 1.5, 2000, symmetrize=False, **kwargs)
    assert bool((obs.magnetization(plain) > 0).all())
    sym = sampling.sample(8, 1.5, 2000, **kwargs)
    est = estimates.estimate_mean(obs.magnetization(sym))
    assert abs(est.value) <= N_SIGMA * est.stderr
    assert torch.equal(obs.abs_magnetization(sym), obs.abs_magnetization(plain))


def test_run_chains_trace_and_dtype():
    g = torch.Generator().manual_seed(0)
    start = torch.ones(3, 4, 4, dtype=torch.int8)
    trace = chains.run_chains(start, 2.0, 5, generator=g, method="metropolis")
    assert trace.lattices.dtype == torch.int8 and trace.lattices.shape == (3, 4, 4)
    assert trace.energy_per_site.shape == (5, 3) and trace.magnetization.shape == (5, 3)
    torch.testing.assert_close(trace.energy_per_site[-1], obs.energy_per_site(trace.lattices))
    torch.testing.assert_close(trace.magnetization_sq[-1], obs.magnetization_sq(trace.lattices))
    assert torch.equal(start, torch.ones(3, 4, 4, dtype=torch.int8))  # input untouched
    taus = chains.autocorrelation_times(trace)
    assert taus.max >= 0.5


@pytest.mark.parametrize(
    "sweep", [kernels.heat_bath_sweep, kernels.metropolis_sweep, swendsen_wang.swendsen_wang_sweep]
)
def test_sweeps_preserve_shape_and_spins(sweep):
    g = torch.Generator().manual_seed(0)
    s = kernels.random_lattices(6, 4, generator=g, dtype=torch.float64).reshape(2, 3, 4, 4)
    out = sweep(s, 2.2, generator=g)
    assert out.shape == s.shape and out.dtype == torch.float64
    obs.validate_lattices(out)


def test_bad_input():
    g = torch.Generator().manual_seed(0)
    good = torch.ones(2, 4, 4)
    with pytest.raises(ValueError, match="temperature T"):
        kernels.heat_bath_sweep(good, 0.0, generator=g)
    with pytest.raises(ValueError, match="temperature T"):
        sampling.sample(4, -1.0, 10, seed=0)
    with pytest.raises(ValueError, match="unknown sampling method"):
        sampling.sample(4, 2.0, 10, method="wolff", seed=0)
    with pytest.raises(ValueError, match="even L"):
        sampling.sample(5, 2.0, 10, method="heat_bath", seed=0)
    with pytest.raises(ValueError, match="even L"):
        kernels.metropolis_sweep(torch.ones(2, 5, 5), 2.0, generator=g)
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        swendsen_wang.swendsen_wang_sweep(torch.zeros(2, 4, 4), 2.0, generator=g)
    with pytest.raises(ValueError, match="square"):
        swendsen_wang.swendsen_wang_sweep(torch.ones(2, 4, 6), 2.0, generator=g)
    with pytest.raises(ValueError, match="either seed or generator"):
        sampling.sample(4, 2.0, 10, seed=0, generator=g)
    with pytest.raises(ValueError, match="n_samples"):
        sampling.sample(4, 2.0, 0, seed=0)
    with pytest.raises(ValueError, match="coupling J"):
        sampling.sample(4, 2.0, 10, J=-1.0, seed=0)
    with pytest.raises(ValueError, match="n_chains, L, L"):
        chains.run_chains(torch.ones(4, 4), 2.0, 3, generator=g)
