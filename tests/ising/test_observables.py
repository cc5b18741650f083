"""Observables of single configurations: deterministic configurations check the definitions.

Their Monte Carlo estimates and error bars are tested in ``test_estimates.py``.
"""

import pytest
import torch

from vaezoo.ising import observables as obs


def _checkerboard(L: int) -> torch.Tensor:
    i = torch.arange(L)
    return 1.0 - 2.0 * ((i[:, None] + i[None, :]) % 2).to(torch.float64)


# ------------------------------------------------------------------------------------------------
# Definitions on fixed configurations
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [2, 3, 4, 7])
def test_energy_of_ordered_state(L):
    up = torch.ones(L, L)
    assert float(obs.energy(up)) == -2 * L * L  # 2N satisfied bonds
    assert float(obs.energy(-up, J=0.5)) == -L * L
    assert float(obs.energy_per_site(up)) == -2.0


@pytest.mark.parametrize("L", [2, 4, 6])
def test_energy_of_checkerboard(L):
    assert float(obs.energy(_checkerboard(L))) == 2 * L * L  # every bond unsatisfied


def test_energy_single_flip_and_stripes():
    s = torch.ones(4, 4)
    s[1, 2] = -1
    assert float(obs.energy(s)) == -32 + 8  # four bonds go from -1 to +1
    stripes = torch.ones(4, 4)
    stripes[:2] = -1  # two domain walls of 4 bonds each on the torus
    assert float(obs.energy(stripes)) == -32 + 2 * 8


def test_magnetization_family_and_batch_shape():
    s = torch.ones(3, 5, 4, 4)
    s[0, :, 0, :] = -1  # m = 1/2
    s[1] = -1  # m = -1
    m = obs.magnetization(s)
    assert m.shape == (3, 5) and m.dtype == torch.float64
    assert torch.equal(m[:, 0], torch.tensor([0.5, -1.0, 1.0], dtype=torch.float64))
    assert torch.equal(obs.abs_magnetization(s)[:, 0], torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64))
    assert torch.equal(obs.magnetization_sq(s)[:, 0], torch.tensor([0.25, 1.0, 1.0], dtype=torch.float64))


def test_two_point_correlation_definitions():
    L = 6
    g_up = obs.two_point_correlation(torch.ones(L, L))
    assert g_up.shape == (L // 2 + 1,)
    assert torch.equal(g_up, torch.ones(L // 2 + 1, dtype=torch.float64))
    g_checker = obs.two_point_correlation(_checkerboard(L))
    assert torch.equal(g_checker, torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64))
    # Stripes along one axis: fully correlated along x, alternating pairs along y; the function
    # averages the two axes.
    stripes = torch.ones(4, 4)
    stripes[1::2] = -1
    g = obs.two_point_correlation(stripes)
    assert torch.equal(g, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(4, 4), torch.full((4, 4), 2.0), torch.ones(4, 4, dtype=torch.bool), torch.ones(4), [1, -1]],
)
def test_validation_rejects_non_spins(bad):
    with pytest.raises(ValueError):
        obs.energy(bad)


def test_validation_accepts_integer_spins():
    s = torch.ones(4, 4, dtype=torch.int8)
    assert float(obs.energy(s)) == -32.0
