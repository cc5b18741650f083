"""Exact 2D Ising results: published anchors and agreement of three independent methods.

Brute-force enumeration, the row transfer matrix and Kaufman's formula share no code beyond the
definition of the torus, so agreement to ~1e-12 between them is the main correctness check.
"""

import math

import pytest
import torch

from vaezoo.errors import ConfigError
from vaezoo.ising import exact as ex
from vaezoo.ising import observables as obs

CATALAN = 0.915965594177219015054603514932384110774

# Couplings spanning the disordered phase, the critical point and the ordered phase.
COUPLINGS = [0.1, 0.3, ex.BETA_C, 0.5, 1.0]
THERMO_FIELDS = ["log_z", "energy_per_site", "heat_capacity_per_site"]
MAGNETIC_FIELDS = ["magnetization_sq", "abs_magnetization", "magnetization_fourth"]

# Agreement tolerance between exact methods: rounding only (observed differences are <= 5e-14).
RTOL = 1e-12
ATOL = 1e-12


def _close(a: float, b: float, rtol: float = RTOL, atol: float = ATOL) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


# ------------------------------------------------------------------------------------------------
# Published anchors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["brute_force", "transfer_matrix", "kaufman"])
def test_anchor_l4_k03(method):
    result = ex.exact_thermodynamics(4, 1 / 0.3, method=method)
    assert result.log_z_per_site == pytest.approx(0.7990952079, abs=5e-11)


@pytest.mark.parametrize("method", ["brute_force", "transfer_matrix", "kaufman"])
def test_anchor_l4_critical(method):
    result = ex.exact_thermodynamics(4, ex.T_C, method=method)
    assert result.log_z_per_site == pytest.approx(0.9701197162, abs=5e-11)
    if method != "kaufman":
        assert result.abs_magnetization == pytest.approx(0.843860, abs=5e-7)


def test_critical_constants():
    assert ex.T_C == pytest.approx(2.269185314213022, rel=1e-15)
    assert ex.BETA_C * ex.T_C == pytest.approx(1.0, rel=1e-15)
    assert math.sinh(2 * ex.BETA_C) == pytest.approx(1.0, rel=1e-15)


def test_onsager_at_critical_point():
    assert ex.onsager_log_z_per_site(ex.T_C) == pytest.approx(
        0.5 * math.log(2) + 2 * CATALAN / math.pi, abs=1e-13
    )
    assert ex.onsager_log_z_per_site(ex.T_C) == pytest.approx(0.9296953983, abs=5e-11)
    assert ex.onsager_energy_per_site(ex.T_C) == pytest.approx(-math.sqrt(2), abs=1e-14)
    assert ex.onsager_heat_capacity_per_site(ex.T_C) == math.inf
    assert ex.yang_magnetization(ex.T_C) == 0.0


# ------------------------------------------------------------------------------------------------
# Agreement between the finite-lattice methods
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [2, 3, 4, 5])
@pytest.mark.parametrize("K", COUPLINGS)
def test_brute_force_matches_transfer_matrix_and_kaufman(L, K):
    brute = ex.brute_force_thermodynamics(L, 1 / K)
    transfer = ex.transfer_matrix_thermodynamics(L, 1 / K)
    kaufman = ex.kaufman_thermodynamics(L, 1 / K)
    for field in THERMO_FIELDS:
        assert _close(getattr(transfer, field), getattr(brute, field)), field
        assert _close(getattr(kaufman, field), getattr(brute, field)), field
    for field in MAGNETIC_FIELDS:
        assert _close(getattr(transfer, field), getattr(brute, field)), field


@pytest.mark.parametrize("L", [6, 8])
@pytest.mark.parametrize("K", [0.3, ex.BETA_C, 0.6])
def test_transfer_matrix_matches_kaufman(L, K):
    transfer = ex.transfer_matrix_thermodynamics(L, 1 / K)
    kaufman = ex.kaufman_thermodynamics(L, 1 / K)
    for field in THERMO_FIELDS:
        assert _close(getattr(transfer, field), getattr(kaufman, field)), field


def test_transfer_matrix_matches_kaufman_l10():
    transfer = ex.transfer_matrix_thermodynamics(10, ex.T_C)
    kaufman = ex.kaufman_thermodynamics(10, ex.T_C)
    for field in THERMO_FIELDS:
        assert _close(getattr(transfer, field), getattr(kaufman, field)), field
    assert transfer.abs_magnetization is None  # the m-distribution stops at L = 8


@pytest.mark.slow
def test_transfer_matrix_matches_kaufman_l12():
    transfer = ex.transfer_matrix_thermodynamics(12, 2.0)
    kaufman = ex.kaufman_thermodynamics(12, 2.0)
    for field in THERMO_FIELDS:
        assert _close(getattr(transfer, field), getattr(kaufman, field)), field


@pytest.mark.parametrize("K", [0.3, 0.6])
def test_magnetization_distribution_matches_enumeration(K):
    # The row-by-row count of up spins against the brute-force marginal of the density of states.
    L, T = 4, 1 / K
    p_transfer = ex.transfer_matrix_magnetization_distribution(L, T)
    g = ex.density_of_states(L).to(torch.float64)
    bond_sum = 2.0 * L * L - 2.0 * torch.arange(g.shape[0], dtype=torch.float64)
    weights = g * torch.exp(K * (bond_sum - bond_sum.max())).unsqueeze(1)
    p_brute = weights.sum(0) / weights.sum()
    torch.testing.assert_close(p_transfer, p_brute, rtol=1e-12, atol=1e-15)


def test_magnetization_distribution_gives_transfer_m2():
    # Two transfer-matrix routes to <m^2>: spectral row correlations and the counted distribution.
    L, T = 6, 2.4
    p = ex.transfer_matrix_magnetization_distribution(L, T)
    n = L * L
    m = (2.0 * torch.arange(n + 1, dtype=torch.float64) - n) / n
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-14)
    torch.testing.assert_close(p, p.flip(0), rtol=1e-12, atol=1e-15)  # s -> -s symmetry
    assert _close(float((p * m.square()).sum()), ex.transfer_matrix_thermodynamics(L, T).magnetization_sq)


def test_kaufman_derivatives_are_smooth_at_critical_point():
    # gamma_0 vanishes at K_c; the heat capacity must be continuous through it.
    at = ex.kaufman_thermodynamics(8, 1 / ex.BETA_C)
    below = ex.kaufman_thermodynamics(8, 1 / (ex.BETA_C - 1e-9))
    above = ex.kaufman_thermodynamics(8, 1 / (ex.BETA_C + 1e-9))
    for neighbour in (below, above):
        assert neighbour.heat_capacity_per_site == pytest.approx(at.heat_capacity_per_site, abs=1e-7)
        assert neighbour.energy_per_site == pytest.approx(at.energy_per_site, abs=1e-7)


def test_exact_thermodynamics_auto_and_coupling_scaling():
    assert ex.exact_thermodynamics(6, 2.5).method == "transfer_matrix"
    assert ex.exact_thermodynamics(16, 2.5).method == "kaufman"
    # Only K = J / T matters for ln Z; energies scale with J.
    a = ex.kaufman_thermodynamics(6, 2.5, J=1.0)
    b = ex.kaufman_thermodynamics(6, 5.0, J=2.0)
    assert _close(a.log_z, b.log_z)
    assert _close(2.0 * a.energy_per_site, b.energy_per_site)
    assert _close(a.heat_capacity_per_site, b.heat_capacity_per_site)


# ------------------------------------------------------------------------------------------------
# Enumeration helpers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_density_of_states_basic_properties(L):
    g = ex.density_of_states(L)
    n = L * L
    assert g.shape == (2 * n + 1, n + 1)
    assert int(g.sum()) == 2**n
    assert torch.equal(g, g.flip(1))  # s -> -s
    assert int(g[0, 0]) == 1 and int(g[0, n]) == 1  # the two ground states
    assert int(g[0].sum()) == 2
    # Flipping one spin of a ground state breaks its 4 bonds.
    assert int(g[4, n - 1]) == n


@pytest.mark.parametrize("L", [2, 3, 4])
def test_density_of_states_matches_explicit_energies(L):
    # Independent code path: roll-based energies of the explicitly enumerated lattices.
    states = ex.enumerate_states(L)
    n = L * L
    unequal = ((2 * n + obs.energy(states)) / 2).round().to(torch.int64)  # E = -(2N - 2d)
    n_up = ((states > 0).sum(dim=(-2, -1))).to(torch.int64)
    counts = torch.bincount(unequal * (n + 1) + n_up, minlength=(2 * n + 1) * (n + 1))
    assert torch.equal(counts.reshape(2 * n + 1, n + 1), ex.density_of_states(L))


def test_enumerate_states_and_state_index_round_trip():
    states = ex.enumerate_states(3)
    assert states.shape == (512, 3, 3)
    assert torch.equal(ex.state_index(states), torch.arange(512))
    assert bool((states[0] == -1).all()) and bool((states[-1] == 1).all())
    # Bit k of the index is the occupation of site k in row-major order.
    assert states[1, 0, 0] == 1 and bool((states[1].flatten()[1:] == -1).all())
    assert states[2**3, 1, 0] == 1 and int((states[2**3] == 1).sum()) == 1


@pytest.mark.parametrize("K", [0.3, 0.6])
def test_brute_force_log_probs(K):
    L, T = 4, 1 / K
    log_p = ex.brute_force_log_probs(L, T)
    assert log_p.shape == (2**16,) and log_p.dtype == torch.float64
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-12)
    states = ex.enumerate_states(L)
    # Against Boltzmann weights from explicit energies and Kaufman's ln Z.
    torch.testing.assert_close(log_p, ex.exact_log_prob(states, T), rtol=0, atol=1e-11)
    torch.testing.assert_close(log_p, -obs.energy(states) / T - ex.brute_force_thermodynamics(L, T).log_z)


def test_exact_log_prob_is_normalised_for_any_batch_shape():
    states = ex.enumerate_states(3).reshape(8, 64, 3, 3)
    log_p = ex.exact_log_prob(states, 2.0)
    assert log_p.shape == (8, 64)
    assert float(torch.logsumexp(log_p.flatten(), 0)) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Infinite lattice
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [0.2, 0.3, 0.6, 1.0])
def test_kaufman_converges_to_onsager(K):
    T, L = 1 / K, 64
    k = ex.kaufman_thermodynamics(L, T)
    # Away from T_c finite-size corrections are exponentially small, except for the two-fold
    # degenerate ordered state below T_c, which adds ln 2 to ln Z.
    degeneracy = math.log(2) / L**2 if K > ex.BETA_C else 0.0
    assert k.log_z_per_site - degeneracy == pytest.approx(ex.onsager_log_z_per_site(T), abs=1e-12)
    assert k.energy_per_site == pytest.approx(ex.onsager_energy_per_site(T), abs=1e-12)
    assert k.heat_capacity_per_site == pytest.approx(ex.onsager_heat_capacity_per_site(T), abs=1e-10)


@pytest.mark.parametrize("T", [1.5, 2.0, 2.2, 2.3, 3.0, 5.0])
def test_onsager_heat_capacity_is_derivative_of_energy(T):
    h = 1e-5  # central difference: truncation error ~ h^2 c''' and rounding ~ 1e-16 / h
    numerical = (ex.onsager_energy_per_site(T + h) - ex.onsager_energy_per_site(T - h)) / (2 * h)
    assert ex.onsager_heat_capacity_per_site(T) == pytest.approx(numerical, rel=1e-7)


@pytest.mark.parametrize("T", [1.0, 2.0, ex.T_C, 3.0, 10.0])
def test_onsager_entropy_and_free_energy_identities(T):
    s = ex.onsager_entropy_per_site(T)
    f = ex.onsager_free_energy_per_site(T)
    u = ex.onsager_energy_per_site(T)
    assert f == pytest.approx(u - T * s, abs=1e-13)
    assert 0.0 < s < math.log(2)


def test_onsager_limits():
    assert ex.onsager_entropy_per_site(1e4) == pytest.approx(math.log(2), abs=1e-7)
    assert ex.onsager_energy_per_site(0.5) == pytest.approx(-2.0, abs=1e-5)
    assert ex.onsager_log_z_per_site(0.5) == pytest.approx(2.0 / 0.5, abs=1e-5)


def test_yang_magnetization():
    assert ex.yang_magnetization(3.0) == 0.0
    assert ex.yang_magnetization(0.2) == pytest.approx(1.0, abs=1e-12)
    for T in [1.0, 2.0, 2.26]:
        t = math.tanh(1 / T)
        # Equivalent form in tanh K (sinh 2K = 2 t / (1 - t^2)).
        assert ex.yang_magnetization(T) == pytest.approx(
            (1 - (1 - t * t) ** 4 / (16 * t**4)) ** 0.125, rel=1e-13
        )
    # Deep in the ordered phase an 8 x 8 torus is already at the thermodynamic limit.
    assert ex.transfer_matrix_thermodynamics(8, 1.5).abs_magnetization == pytest.approx(
        ex.yang_magnetization(1.5), abs=1e-5
    )


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [0.0, -1.0, math.inf, math.nan, "2.0", True])
def test_bad_temperature(T):
    with pytest.raises(ValueError, match="temperature T"):
        ex.kaufman_thermodynamics(4, T)
    with pytest.raises(ValueError, match="temperature T"):
        ex.onsager_log_z_per_site(T)


@pytest.mark.parametrize("J", [0.0, -1.0, math.nan])
def test_bad_coupling(J):
    with pytest.raises(ValueError, match="coupling J"):
        ex.brute_force_thermodynamics(3, 2.0, J=J)


@pytest.mark.parametrize(
    ("function", "L", "message"),
    [
        (ex.brute_force_thermodynamics, 6, "2 <= L <= 5"),
        (ex.density_of_states, 6, "2 <= L <= 5"),
        (ex.enumerate_states, 5, "2 <= L <= 4"),
        (ex.brute_force_log_probs, 5, "2 <= L <= 4"),
        (ex.transfer_matrix_thermodynamics, 13, "2 <= L <= 12"),
        (ex.transfer_matrix_magnetization_distribution, 9, "2 <= L <= 8"),
        (ex.kaufman_thermodynamics, 1, "L >= 2"),
        (ex.brute_force_thermodynamics, 3.0, "must be an int"),
    ],
)
def test_bad_size(function, L, message):
    args = (L,) if function in (ex.density_of_states, ex.enumerate_states) else (L, 2.0)
    with pytest.raises(ValueError, match=message):
        function(*args)


def test_bad_method():
    with pytest.raises(ValueError, match="unknown method"):
        ex.exact_thermodynamics(4, 2.0, method="monte_carlo")


def test_bad_lattices():
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        ex.exact_log_prob(torch.zeros(2, 4, 4), 2.0)
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        ex.state_index(torch.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="square"):
        ex.exact_log_prob(torch.ones(4, 6), 2.0)
    with pytest.raises(ValueError, match="62 sites"):
        ex.state_index(torch.ones(8, 8))


@pytest.mark.parametrize("T", [1e-300, 1e-20, 0.1])
def test_ground_state_limit_without_overflow(T):
    # K = J/T >= 7: every method gives the two ground states' values, with no overflow or lost digits
    # (brute force used to report E/N = -4 and <m^2> = 2 at T = 1e-20).
    for f in (ex.brute_force_thermodynamics, ex.transfer_matrix_thermodynamics, ex.kaufman_thermodynamics):
        r = f(4, T)
        assert r.log_z == 2 * 16 / T + math.log(2) and r.energy_per_site == -2.0
        assert r.heat_capacity_per_site == 0.0
    assert ex.onsager_log_z_per_site(T) == 2 / T and ex.onsager_energy_per_site(T) == -2.0
    assert ex.onsager_heat_capacity_per_site(T) == 0.0 and ex.yang_magnetization(T) == 1.0
    assert ex.onsager_entropy_per_site(T) == 0.0
    assert ex.kaufman_log_z(64, T) == 2 * 64**2 / T + math.log(2)
    assert torch.isfinite(ex.brute_force_log_probs(3, T)).any()


def test_ground_state_limit_joins_the_methods():
    # Just below the switch the methods' own values equal the limit to rounding, so it is seamless.
    T = 1 / 6.9
    for f in (ex.brute_force_thermodynamics, ex.transfer_matrix_thermodynamics, ex.kaufman_thermodynamics):
        r = f(4, T)
        assert r.energy_per_site == pytest.approx(-2.0, abs=1e-14)
        assert r.heat_capacity_per_site == pytest.approx(0.0, abs=1e-12)
        assert r.log_z == pytest.approx(2 * 16 / T + math.log(2), rel=1e-15)


@pytest.mark.parametrize("T", [1e300, 1e12])
def test_kaufman_high_temperature_limit(T):
    # K <= 1e-9: Kaufman's derivatives lose every digit (nan from K ~ 1e-150); the series is exact there.
    k, tm = ex.kaufman_thermodynamics(6, T), ex.transfer_matrix_thermodynamics(6, T)
    assert math.isfinite(k.energy_per_site) and math.isfinite(k.heat_capacity_per_site)
    assert k.energy_per_site == pytest.approx(-2 / T, rel=1e-15)
    assert k.heat_capacity_per_site == pytest.approx(2 * (1 / T) ** 2, rel=1e-15)
    assert k.log_z == pytest.approx(tm.log_z, rel=1e-15)
    assert k.energy_per_site == pytest.approx(tm.energy_per_site, abs=1e-15)


def test_extreme_temperatures_refused_with_the_range():
    with pytest.raises(ConfigError, match="L >= 4"):
        ex.kaufman_thermodynamics(3, 1e300)
    with pytest.raises(ConfigError, match="too small.*T must be >"):
        ex.exact_thermodynamics(4, 1e-310)
    with pytest.raises(ConfigError, match="ln Z = 2 N J / T overflows"):
        ex.exact_thermodynamics(4, 1e-307)
