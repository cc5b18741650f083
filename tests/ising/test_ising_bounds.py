"""Reverse-KL training of the block-spin model (fit_free_energy) against exact enumeration at L <= 4."""

import math

import pytest
import torch

from tests.conftest import randomize
from vaezoo.errors import ConfigError
from vaezoo.guides.block_spin import BlockAmortized
from vaezoo.inference.exact_kl import exact_bound
from vaezoo.inference.free_energy import exact_free_energy
from vaezoo.inference.reverse_kl import fit_free_energy, reverse_kl_surrogate
from vaezoo.ising.exact import T_C
from vaezoo.models.block_spin import BlockSpin

TINY = {"channels": 2, "depth": 1, "gain_hidden": 4}


def model_and_guide(L, levels=1):
    torch.manual_seed(0)
    model = BlockSpin(L=L, levels=levels, **TINY)
    guide = BlockAmortized(model, **TINY)
    randomize(model, guide, seed=5)
    return model, guide


def test_objective_estimates_the_exact_bound_at_l4():
    model, guide = model_and_guide(L=4)
    exact = exact_bound(model, guide, T_C)
    f = torch.cat([reverse_kl_surrogate(model, guide, T_C, 500)[1] for _ in range(4)]).double()
    stderr = f.std().item() / math.sqrt(len(f))
    assert abs(f.mean().item() - exact) < 4 * stderr, (f.mean().item(), exact, stderr)
    assert exact > exact_free_energy(4, T_C)


def _parameters(model, guide):
    return [p for m in (model, guide) for p in m.parameters()]


def test_surrogate_gradient_is_the_exact_gradient_of_the_bound_at_l2():
    """Along a random direction d: the mean of the score-function estimates of d . grad F equals the
    central finite difference of the exactly enumerated bound, within 4 standard errors plus the finite
    difference's own error (gauged by halving its step)."""
    model, guide = model_and_guide(L=2)
    params = _parameters(model, guide)
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g) for p in params]

    def shifted(eps):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(eps * d)
            value = exact_bound(model, guide, 2.0)
            for p, d in zip(params, direction, strict=True):
                p.sub_(eps * d)
        return value

    def central(eps):
        return (shifted(eps) - shifted(-eps)) / (2 * eps)

    exact, coarser = central(5e-3), central(1e-2)
    estimates = []
    for _ in range(300):
        loss, _ = reverse_kl_surrogate(model, guide, 2.0, 64)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        pairs = zip(grads, direction, strict=True)
        estimates.append(sum((gr * d).sum() for gr, d in pairs if gr is not None))
    est = torch.stack(estimates).detach()
    stderr = est.std().item() / math.sqrt(len(est))
    mean = est.mean().item()
    assert abs(mean - exact) < 4 * stderr + abs(coarser - exact), (mean, exact, coarser, stderr)
    assert abs(exact) > 4 * stderr, "the direction must carry a measurable derivative for the test to bite"


def test_reverse_kl_training_tightens_the_exact_bound_which_stays_above_f():
    model, guide = model_and_guide(L=2)
    before = exact_bound(model, guide, 2.0)
    means = fit_free_energy(model, guide, [2.0], steps=150, batch_size=64, lr=1e-2)
    after = exact_bound(model, guide, 2.0)
    assert exact_free_energy(2, 2.0) < after < before - 0.05, (before, after)
    assert len(means) == 150 and all(math.isfinite(m) for m in means)


def test_bad_arguments_are_named():
    model, guide = model_and_guide(L=2)
    with pytest.raises(ConfigError, match="batch_size"):
        reverse_kl_surrogate(model, guide, 2.0, 1)
    with pytest.raises(ConfigError, match="at least one temperature"):
        fit_free_energy(model, guide, [], steps=1)
    with pytest.raises(ConfigError, match="BlockSpin"):
        fit_free_energy(guide, guide, [2.0], steps=1)
    with pytest.raises(ConfigError, match="steps"):
        fit_free_energy(model, guide, [2.0], steps=0)
