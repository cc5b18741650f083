"""The VAN baseline (experiments/van.py) checked by enumeration of every state at L = 3 and 4."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from vaezoo.ising import T_C, energy
from vaezoo.ising.exact import enumerate_states, exact_thermodynamics

_SPEC = importlib.util.spec_from_file_location(
    "experiments_van", Path(__file__).resolve().parents[2] / "experiments" / "van.py")
van_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(van_module)
VAN, surrogate_loss, free_energy_bound = (van_module.VAN, van_module.surrogate_loss,
                                          van_module.free_energy_bound)


def make_van(z2, seed=0, layers=2, kernel_size=3, hidden=4):
    torch.manual_seed(seed)
    van = VAN(hidden, layers, kernel_size, z2=z2).double()
    with torch.no_grad():  # larger weights than the default init, so q is far from uniform
        for p in van.parameters():
            p.mul_(2.0)
    return van


def exact_free_energy(van, L, T):
    """Exact ``F_q / N = sum_s q(s) (E(s) + T ln q(s)) / N``, ``E_q[E] / N`` and ln q of every state."""
    states = enumerate_states(L)
    with torch.no_grad():
        log_q = van.log_prob(states)
    q = log_q.exp()
    e = energy(states)
    return float((q * (e + T * log_q)).sum()) / L**2, float((q * e).sum()) / L**2, log_q


@pytest.mark.parametrize(("L", "z2"), [(4, False), (3, True)])
def test_normalized(L, z2):
    _, _, log_q = exact_free_energy(make_van(z2), L, T_C)
    assert abs(float(torch.logsumexp(log_q, 0))) < 1e-12


def test_autoregressive_mask():
    L, van = 4, make_van(False)
    s = torch.where(torch.rand(8, L, L, generator=torch.Generator().manual_seed(1)) < 0.5, 1.0, -1.0).double()
    base = van.logits(s).flatten(1)
    changed_by_earlier = 0
    for i in range(1, L * L):
        later = s.flatten(1).clone()
        later[:, i:] *= -1  # flip site i and every later site
        seen = van.logits(later.view_as(s)).flatten(1)[:, i]
        assert torch.equal(seen, base[:, i]), f"site {i} sees a site >= {i}"
        earlier = s.flatten(1).clone()
        earlier[:, :i] *= -1
        changed_by_earlier += not torch.allclose(van.logits(earlier.view_as(s)).flatten(1)[:, i], base[:, i])
    assert changed_by_earlier == L * L - 1  # the mask is not vacuous: every site sees earlier sites


def test_window_is_exact():
    L, van = 7, make_van(False, layers=2, kernel_size=3)  # reach 2: the window is cropped on every side
    s = torch.where(torch.rand(5, L, L, generator=torch.Generator().manual_seed(2)) < 0.5, 1.0, -1.0).double()
    with torch.no_grad():
        full = van.logits(s)
        err = max(float((van.site_logit(s, r, c) - full[:, r, c]).abs().max())
                  for r in range(L) for c in range(L))
    assert err < 1e-12


@pytest.mark.parametrize("z2", [False, True])
def test_sampled_free_energy_matches_enumeration(z2):
    L, T, van = 3, 2.0, make_van(z2, seed=3)
    f_exact, e_exact, _ = exact_free_energy(van, L, T)
    est = free_energy_bound(van, L, T, n=4000, chunk=2000, generator=torch.Generator().manual_seed(4))
    assert abs(est["F_q_per_site"] - f_exact) < 4 * est["se"]
    assert abs(est["E_per_site"] - e_exact) < 4 * est["E_se"]
    assert est["se"] < 0.05 * abs(f_exact - (-T * math.log(2)))  # resolves q from the uniform distribution


def test_score_function_gradient_matches_enumeration():
    """Mean surrogate gradient over independent batches = (1 - 1/B) x the exact gradient of beta F_q."""
    L, T, B, M = 3, 2.0, 32, 200
    van = make_van(True, seed=5)
    params = list(van.parameters())
    states = enumerate_states(L)
    log_q = van.log_prob(states)
    exact_obj = (log_q.exp() * (energy(states) / T + log_q)).sum()
    exact = torch.autograd.grad(exact_obj, params)
    gen = torch.Generator().manual_seed(6)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    project = lambda grads: float(sum((g * d).sum() for g, d in zip(grads, direction, strict=True)))  # noqa: E731
    generator = torch.Generator().manual_seed(7)
    samples = []
    for _ in range(M):
        loss, _ = surrogate_loss(van, van.sample(B, L, generator, dtype=torch.float64), 1.0 / T)
        samples.append(project(torch.autograd.grad(loss, params)))
    est = torch.tensor(samples)
    se = float(est.std()) / math.sqrt(M)
    expected = (1 - 1 / B) * project(exact)
    assert abs(float(est.mean()) - expected) < 4 * se
    assert abs(expected) > 8 * se  # the test could tell a wrong sign or a missing factor


def test_bound_above_exact_free_energy_and_training_lowers_it():
    L, T = 3, T_C
    f_exact = -T * exact_thermodynamics(L, T).log_z_per_site
    van = make_van(True, seed=8)
    before, _, _ = exact_free_energy(van, L, T)
    generator = torch.Generator().manual_seed(9)
    opt = torch.optim.Adam(van.parameters(), lr=1e-2)
    for _ in range(40):
        loss, _ = surrogate_loss(van, van.sample(32, L, generator, dtype=torch.float64), 1.0 / T)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, _, _ = exact_free_energy(van, L, T)
    print(f"F_q - F per site: {before - f_exact:.4f} before, {after - f_exact:.4f} after")
    assert before >= f_exact and after >= f_exact
    assert after - f_exact < 0.25 * (before - f_exact)
