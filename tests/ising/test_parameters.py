"""The one set of parameter checks: temperature T, exchange coupling J, reduced coupling K = J/T."""

import math

import pytest
import torch

from vaezoo.errors import ConfigError
from vaezoo.ising import exact, observables, parameters


@pytest.mark.parametrize("T", [0.0, -1.0, math.inf, math.nan, "2.0", True, None])
def test_temperature_must_be_a_finite_positive_number(T):
    with pytest.raises(ConfigError, match="temperature T"):
        parameters.check_temperature(T)


@pytest.mark.parametrize("J", [0.0, -1.0, math.inf, math.nan, "1", True])
def test_exchange_coupling_must_be_ferromagnetic_everywhere(J):
    # One rule for J in the whole package: the observables follow the exact methods and the samplers.
    with pytest.raises(ConfigError, match="exchange coupling J"):
        parameters.check_exchange_coupling(J)
    with pytest.raises(ConfigError, match="exchange coupling J"):
        observables.energy(torch.ones(4, 4), J=J)
    with pytest.raises(ConfigError, match="exchange coupling J"):
        exact.kaufman_log_z(4, 2.0, J=J)


def test_reduced_coupling_from_temperature_or_given():
    assert parameters.reduced_coupling(2.0) == 0.5
    assert parameters.reduced_coupling(2.0, J=3) == 1.5
    assert parameters.reduced_coupling(K=0.25) == 0.25
    assert isinstance(parameters.reduced_coupling(K=1), float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"T": 2.0, "K": 0.5}, "exactly one"),
        ({"K": 0.0}, "reduced coupling K"),
        ({"K": math.nan}, "reduced coupling K"),
        ({"K": 0.5, "J": 2.0}, "goes with the temperature"),
        ({"T": -1.0}, "temperature T"),
        ({"T": 1.0, "J": -1.0}, "exchange coupling J"),
    ],
)
def test_reduced_coupling_rejects(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        parameters.reduced_coupling(**kwargs)


@pytest.mark.parametrize("value", [0, -3, 1.0, True, "2"])
def test_check_int(value):
    with pytest.raises(ConfigError, match="n must be an int >= 1"):
        parameters.check_int(value, "n")
    assert parameters.check_int(0, "n", 0) == 0
