"""Free-energy bounds and exact divergences of the block-spin model, against exact enumeration."""

import math

import pytest
import torch

from tests.conftest import randomize
from vaezoo.guides.block_spin import BlockAmortized, RenormalizationGroupGuide
from vaezoo.inference import ELBO, fit, log_likelihood
from vaezoo.inference.exact_kl import exact_bound, exact_kl_l4, joint_log_probs
from vaezoo.inference.free_energy import (
    exact_free_energy,
    fit_bound_guide,
    free_energy_bound,
    mean_field_free_energy,
)
from vaezoo.ising.exact import T_C, brute_force_thermodynamics, enumerate_states
from vaezoo.ising.lattice_data import lattice_dataset, lattice_input
from vaezoo.models.block_spin import BlockSpin

TINY = {"channels": 2, "depth": 1, "gain_hidden": 4}


def model_and_guide(L, levels=1, seed=0):
    torch.manual_seed(seed)
    model = BlockSpin(L=L, levels=levels, **TINY)
    guide = BlockAmortized(model, **TINY)
    randomize(model, guide, seed=5)
    return model, guide


def test_mean_field_bound_minimizes_its_functional_and_bounds_the_exact_f():
    m = torch.linspace(-1, 1, 400_001, dtype=torch.float64)[1:-1]
    for T in (1.0, 1.5, 2.0, T_C, 2.5, 3.5, 3.99, 4.5):
        p, q = (1 + m) / 2, (1 - m) / 2
        functional = -2 * m**2 + T * (p * p.log() + q * q.log())
        mf = mean_field_free_energy(T)
        assert functional.min().item() == pytest.approx(mf, abs=1e-8)
        for L in (4, 16, 64):
            assert mf > exact_free_energy(L, T)
    assert mean_field_free_energy(4.5) == pytest.approx(-4.5 * math.log(2), rel=1e-14)
    # Deep in the ordered phase the bound approaches the ground-state energy -2 J.
    assert mean_field_free_energy(0.3) == pytest.approx(-2.0, abs=1e-5)


@pytest.mark.parametrize("T", [1.5, T_C, 3.5])
def test_bound_estimator_matches_exact_enumeration_and_bounds_f(T):
    model, guide = model_and_guide(L=2)
    exact = exact_bound(model, guide, T)
    estimate = free_energy_bound(model, guide, T, n=4000)
    assert abs(estimate.value - exact) < 4 * estimate.stderr, (estimate.value, exact, estimate.stderr)
    f = -T * brute_force_thermodynamics(2, T).log_z / 4
    assert estimate.exact == pytest.approx(f, rel=1e-12)
    assert exact > f
    assert estimate.relative_error == pytest.approx((estimate.value - f) / abs(f))


def test_untrained_model_bound_is_above_exact_f_at_l4():
    model, guide = model_and_guide(L=4)
    exact = exact_bound(model, guide, T_C)
    assert exact > exact_free_energy(4, T_C)
    estimate = free_energy_bound(model, guide, T_C, n=2000)
    assert abs(estimate.value - exact) < 4 * estimate.stderr


def test_model_marginal_normalizes_over_all_l4_states():
    model, _ = model_and_guide(L=4)
    states = enumerate_states(4, torch.float32)
    half = lattice_input(states[:32768], K=0.41)  # last spin down; the other half is their flips
    log_q = torch.cat(
        [joint_log_probs(model, None, half[i : i + 8192])[0].logsumexp(0) for i in range(0, 32768, 8192)]
    )
    assert log_q.double().logsumexp(0).item() == pytest.approx(-math.log(2), abs=1e-4)
    some = torch.randperm(32768, generator=torch.Generator().manual_seed(1))[:256]
    flipped = joint_log_probs(model, None, lattice_input(-states[some], K=0.41))[0].logsumexp(0)
    torch.testing.assert_close(flipped, log_q[some], rtol=0, atol=1e-5)  # so q sums to 1 over all states


def test_enumerated_marginal_agrees_with_importance_sampling():
    model, guide = model_and_guide(L=2)
    x = lattice_input(enumerate_states(2, torch.float32), T=2.0)
    exact = joint_log_probs(model, None, x)[0].logsumexp(0).double()
    r = log_likelihood(model, guide, x, k=4000)
    err = r.mc_stderr
    assert ((r.per_datapoint - exact).abs() <= 4 * err + err**2).all(), (r.per_datapoint - exact) / err


@pytest.mark.parametrize("T", [1.5, 3.5])
def test_exact_kl_identities(T):
    model, guide = model_and_guide(L=2)
    r = exact_kl_l4(model, guide, T, method="enumerate")
    thermo = brute_force_thermodynamics(2, T)
    entropy = thermo.energy_per_site / T + thermo.log_z_per_site  # S/N = (E - F) / (N T)
    assert r.entropy == pytest.approx(entropy, rel=1e-9)
    assert r.kl > 0 and r.nll == pytest.approx(r.entropy + r.kl, rel=1e-12)
    by_is = exact_kl_l4(model, guide, T, k=2000, method="is")
    assert by_is.kl == pytest.approx(r.kl, abs=4 * by_is.stderr + 1e-4)


def test_rg_guide_gives_an_infinite_bound_off_its_support_and_a_fitted_guide_tightens_it():
    model, guide = model_and_guide(L=2)
    assert free_energy_bound(model, RenormalizationGroupGuide(model), 2.0, n=200).value == math.inf
    assert exact_bound(model, RenormalizationGroupGuide(model), 2.0) == math.inf
    before = exact_bound(model, guide, 2.0)
    fit_bound_guide(model, guide, [2.0], steps=150, batch_size=64, lr=1e-2)
    after = exact_bound(model, guide, 2.0)
    assert exact_free_energy(2, 2.0) < after < before - 0.05, (before, after)


def test_training_reduces_the_exact_kl_at_l4():
    torch.manual_seed(0)
    model = BlockSpin(L=4, levels=1, **TINY)
    guide = RenormalizationGroupGuide(model)
    data = lattice_dataset(4, (2.0,), n_per_temperature=2000, method="exact", progress=False).x
    before = exact_kl_l4(model, guide, 2.0, method="enumerate")
    fit(model, guide, data, ELBO(), epochs=4, batch_size=100, lr=1e-2, progress=False)
    after = exact_kl_l4(model, guide, 2.0, method="enumerate")
    assert after.kl > 0 and before.kl > 0
    assert after.kl < 0.5 * before.kl, (before.kl, after.kl)
    assert after.nll == pytest.approx(after.entropy + after.kl)
