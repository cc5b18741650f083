"""The block-spin model, its lattice distributions and guides, checked by enumeration on tiny lattices."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from scipy.stats import chi2

from tests.conftest import randomize
from vaezoo import checkpoint
from vaezoo.analysis.perturb import perturb, perturbation_grid
from vaezoo.distributions import BlockMajority, CheckerboardLattice, SymmetricLatticeCategorical
from vaezoo.distributions.checkerboard import sublattice_a
from vaezoo.errors import ConfigError, DataError
from vaezoo.guides.block_spin import BlockAmortized, RenormalizationGroupGuide
from vaezoo.inference import ELBO, IWAE, ScoreFunction, fit, run_pair
from vaezoo.ising.exact import enumerate_states, exact_log_prob
from vaezoo.ising.lattice_data import lattice_dataset, lattice_input
from vaezoo.ising.observables import energy_per_site
from vaezoo.models.block_spin import BlockSpin, LatticeConditional, sample_model

SMALL = {"channels": 3, "depth": 1, "gain_hidden": 4}


def random_spins(n, L, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(n, L, L, generator=g) < 0.5, 1.0, -1.0)


def random_x(n, L, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    return lattice_input(random_spins(n, L, seed), K=0.3 + 0.4 * torch.rand(n, generator=g))


def lattice_dist(side, K=0.4, seed=0, context=True):
    """A CheckerboardLattice of a randomized LatticeConditional, in float64, with a random coarser level."""
    cond = LatticeConditional(3, 1, 4, context=context).double()
    randomize(cond, seed=11)
    coarser = random_spins(1, max(side // 2, 1), seed).double()[0] if context else None
    return cond(coarser, torch.tensor(K, dtype=torch.float64), side)


@pytest.mark.parametrize("latent", ["binary", "continuous"])
def test_sites_shapes_and_particles(latent):
    model = BlockSpin(L=8, levels=2, latent=latent, **SMALL)
    guide = BlockAmortized(model, **SMALL)
    x = random_x(5, 8)
    pair = run_pair(model, guide, x, num_particles=3)
    assert pair.latent == ["z2", "z1"] and pair.observed == ["x"]
    assert [tuple(pair.model_sites[n]["fn"].event_shape) for n in ("z2", "z1", "x")] == [
        (2, 2),
        (4, 4),
        (8, 8),
    ]
    assert pair.guide_sites["z1"]["value"].shape == (3, 5, 4, 4)
    assert pair.log_weight().shape == (3, 5)
    assert torch.isfinite(pair.log_weight()).all()


@pytest.mark.parametrize("latent", ["binary", "continuous"])
def test_z2_symmetry_is_exact(latent):
    model = BlockSpin(L=8, levels=2, latent=latent, **SMALL)
    guide = BlockAmortized(model, **SMALL)
    randomize(model, guide, seed=11)
    x = random_x(6, 8)
    flipped = x.clone()
    flipped[:, 0] *= -1

    def flip(z):
        return 1 - z if latent == "binary" else -z

    g = poutine.trace(guide).get_trace(x)
    z = {n: g.nodes[n]["value"] for n in ("z1", "z2")}
    z_flipped = {n: flip(v) for n, v in z.items()}
    joint = poutine.trace(poutine.condition(model, data=z)).get_trace(x)
    joint_flipped = poutine.trace(poutine.condition(model, data=z_flipped)).get_trace(flipped)
    q_flipped = poutine.trace(poutine.condition(guide, data=z_flipped)).get_trace(flipped)
    for name in ("z2", "z1", "x"):
        a, b = joint.nodes[name], joint_flipped.nodes[name]
        torch.testing.assert_close(a["fn"].log_prob(a["value"]), b["fn"].log_prob(b["value"]), rtol=0, atol=0)
    for name in ("z1", "z2"):  # torch rounds Bernoulli(l).log_prob(v), Bernoulli(-l).log_prob(1-v) apart
        a, b = g.nodes[name], q_flipped.nodes[name]
        torch.testing.assert_close(
            a["fn"].log_prob(a["value"]), b["fn"].log_prob(b["value"]), rtol=0, atol=1e-5
        )
    # ... while the densities are far from uniform (the symmetry is not that of a trivial model).
    x_lp = joint.nodes["x"]["fn"].log_prob(joint.nodes["x"]["value"])
    assert (x_lp - x_lp.mean()).abs().max() > 0.1


@pytest.mark.parametrize(("side", "context"), [(2, True), (2, False), (4, True)])
def test_checkerboard_lattice_normalizes(side, context):
    d = lattice_dist(side, context=context)
    states = (enumerate_states(side) + 1) / 2
    total = d.log_prob(states).logsumexp(0)
    assert abs(total.item()) < 1e-10


def test_symmetric_categorical_normalizes_and_is_symmetric():
    raw = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    d = SymmetricLatticeCategorical(raw, 2)
    states = (enumerate_states(2) + 1) / 2
    lp = d.log_prob(states[:, None])  # (16, 3)
    torch.testing.assert_close(lp.logsumexp(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(lp, d.log_prob(1 - states[:, None]), rtol=0, atol=0)


def _chi_square_matches(samples, log_probs, p_value=1e-4):
    index = (samples.long().flatten(1) * (2 ** torch.arange(samples[0].numel()))).sum(1)
    counts = torch.bincount(index, minlength=len(log_probs)).double()
    expected = len(samples) * log_probs.exp()
    stat = ((counts - expected) ** 2 / expected).sum().item()
    return stat, chi2.ppf(1 - p_value, len(log_probs) - 1)


@pytest.mark.parametrize("which", ["checkerboard", "categorical"])
def test_samplers_match_log_prob(which):
    if which == "checkerboard":
        d = lattice_dist(2)
    else:
        d = SymmetricLatticeCategorical(
            torch.randn(16, generator=torch.Generator().manual_seed(3)).double(), 2
        )
    samples = d.sample((40000,))
    assert samples.shape == (40000, 2, 2)
    stat, limit = _chi_square_matches(samples, d.log_prob((enumerate_states(2) + 1) / 2))
    assert stat < limit, (stat, limit)


def test_stage_b_can_be_the_exact_heat_bath_conditional():
    """Hand-set weights: skip path = cross kernel times K, deep path off: Boltzmann's p(s_i | neighbours)."""
    L, K = 6, 0.37
    cond = LatticeConditional(3, 1, 4).double()
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    randomize(cond.context, cond.head_a, seed=11)  # stage A arbitrary
    with torch.no_grad():
        cond.skip_b.conv.weight.copy_(cross.reshape(1, 1, 3, 3))
        cond.head_b.conv.weight.zero_()
    spins = random_spins(8, L, seed=4).double()
    d = cond(random_spins(8, L // 2, seed=5).double(), torch.full((8,), K, dtype=torch.float64), L)
    b_sites = (~sublattice_a(L)).nonzero().tolist()
    for i, j in b_sites[:6]:
        flipped = spins.clone()
        flipped[:, i, j] *= -1
        model_ratio = d.log_prob((spins + 1) / 2) - d.log_prob((flipped + 1) / 2)
        boltzmann_ratio = exact_log_prob(spins, T=1 / K) - exact_log_prob(flipped, T=1 / K)
        torch.testing.assert_close(model_ratio, boltzmann_ratio, rtol=0, atol=1e-10)


def test_rg_guide_majority_and_ties():
    up, dn = 1.0, -1.0
    # Four blocks of a 4x4 lattice, block sums +4, +2, 0 (tie), -2.
    spins = torch.tensor(
        [[up, up, up, dn], [up, up, up, up], [up, dn, dn, dn], [dn, up, dn, up]],
    )
    d = BlockMajority(spins)
    torch.testing.assert_close(d.probs, torch.tensor([[1.0, 1.0], [0.5, 0.0]]))
    assert d.log_prob(torch.tensor([[1.0, 1.0], [0.0, 0.0]])).item() == pytest.approx(-math.log(2))
    assert d.log_prob(torch.tensor([[1.0, 1.0], [1.0, 0.0]])).item() == pytest.approx(-math.log(2))
    assert d.log_prob(torch.tensor([[0.0, 1.0], [1.0, 0.0]])).item() == -math.inf
    draws = d.sample((4000,))
    assert (draws[:, 0, 0] == 1).all() and (draws[:, 1, 1] == 0).all()
    assert abs(draws[:, 1, 0].mean().item() - 0.5) < 4 * 0.5 / math.sqrt(4000)

    model = BlockSpin(L=4, levels=2, **SMALL)
    trace = poutine.trace(RenormalizationGroupGuide(model)).get_trace(lattice_input(spins[None], T=2.0))
    assert trace.nodes["z1"]["value"][0, 0, 0] == 1 and trace.nodes["z1"]["value"][0, 1, 1] == 0
    assert list(RenormalizationGroupGuide(model).parameters()) == []
    with pytest.raises(ConfigError, match="latent='binary'"):
        RenormalizationGroupGuide(BlockSpin(L=4, levels=2, latent="continuous", **SMALL))


@pytest.mark.parametrize("guide_name", ["block_amortized", "block_rg"])
def test_objectives_give_finite_gradients(guide_name):
    from vaezoo.registry import build_guide

    model = BlockSpin(L=4, levels=2, **SMALL)
    guide = build_guide(guide_name, model, SMALL if guide_name == "block_amortized" else {})
    x = random_x(7, 4)
    for objective in (ELBO(), IWAE(k=3), ScoreFunction(ELBO(), baseline="avg")):
        loss = objective.differentiable_loss(model, guide, x)
        loss.backward()
        assert torch.isfinite(loss)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bad_input_errors_say_what_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"L = 12 is not divisible.*allowed: L a multiple of 8"):
        BlockSpin(L=12, levels=3)
    with pytest.raises(ConfigError, match="T must be a finite number > 0"):
        lattice_input(random_spins(2, 4), T=-1.0)
    with pytest.raises(ConfigError, match="T must be a finite number > 0"):
        sample_model(BlockSpin(L=4, levels=1, **SMALL), 2, T=0.0)
    model = BlockSpin(L=4, levels=1, **SMALL)
    x = random_x(3, 4)
    bad = x.clone()
    bad[0, 0, 1, 1] = 0.0
    with pytest.raises(DataError, match="values other than ±1.*allowed spin values are \\+1 and -1"):
        model.check_x(bad, full=True)
    bad = x.clone()
    bad[1, 1] = -0.5
    with pytest.raises(DataError, match="T <= 0. Allowed: T > 0"):
        model.check_x(bad, full=True)
    bad = x.clone()
    bad[1, 1, 0, 0] += 0.1
    with pytest.raises(DataError, match="constant"):
        model.check_x(bad, full=True)
    with pytest.raises(DataError, match="built for L = 4 lattices, got L = 8"):
        model(random_x(2, 8))

    # A checkpoint carries L in the model config, so restore rebuilds the L it was trained for.
    guide = RenormalizationGroupGuide(model)
    fit(model, guide, x, ELBO(), epochs=1, batch_size=3, out=tmp_path, progress=False)
    restored, _, _, _ = checkpoint.restore(tmp_path / "checkpoint.pt")
    assert isinstance(restored, BlockSpin) and restored.L == 4
    with pytest.raises(DataError, match="built for L = 4 lattices, got L = 8"):
        run_pair(restored, guide, random_x(2, 8))


def test_sample_model_draws_lattices_at_the_requested_temperature():
    model = BlockSpin(L=8, levels=2, **SMALL)
    s = sample_model(model, 5, T=2.5, batch_size=2)
    assert s.shape == (5, 8, 8) and ((s == 1) | (s == -1)).all()
    # A K -> 0 model has every gain 0: independent fair spins, so <E>/N = 0 within its s.e.
    e = energy_per_site(sample_model(model, 2000, K=1e-6))
    assert abs(e.mean().item()) < 4 * math.sqrt(2 / 64) / math.sqrt(2000) + 1e-3


def test_lattice_dataset_is_cached_and_labelled(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEZOO_CACHE", str(tmp_path))
    data = lattice_dataset(4, (1.5, 3.0), n_per_temperature=50, method="exact", progress=False)
    assert data.x.shape == (100, 2, 4, 4)
    torch.testing.assert_close(data.x[:50, 1], torch.full((50, 4, 4), 1 / 1.5))
    assert data.at(3.0).shape == (50, 4, 4)
    files = list((tmp_path / "ising").glob("*.pt"))
    assert len(files) == 1
    again = lattice_dataset(4, (1.5, 3.0), n_per_temperature=50, method="exact", progress=False)
    assert torch.equal(again.x, data.x)
    sw = lattice_dataset(4, (2.0,), n_per_temperature=8, seed=3, progress=False)
    assert sw.info[0]["thin"] >= 1 and sw.info[0]["tau_energy"] > 0
    with pytest.raises(ConfigError, match="L <= 4"):
        lattice_dataset(8, (2.0,), method="exact")


def test_perturbation_reports_overlap_and_energy(tmp_path):
    model = BlockSpin(L=8, levels=2, **SMALL)
    guide = BlockAmortized(model, **SMALL)
    spins = random_spins(6, 8, seed=9)
    result = perturb(model, guide, spins, T=2.2)
    assert [p.level for p in result.levels] == [0, 1, 2]
    for p in result.levels:
        assert p.lattices.shape == (6, 8, 8)
        torch.testing.assert_close(p.overlap, (p.lattices * spins).mean((-2, -1)))
        torch.testing.assert_close(p.energy, energy_per_site(p.lattices).float())
    nudged = perturb(model, guide, spins, T=2.2, levels=[1], nudge=0.0)
    assert len(nudged.levels) == 1
    assert "| level |" in result.table()
    png = perturbation_grid(result, tmp_path / "grid.png", rows=2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="levels \\[5\\] do not exist"):
        perturb(model, guide, spins, T=2.2, levels=[5])


def test_checkerboard_broadcasts_values_over_particles():
    d = lattice_dist(4)
    values = (random_spins(5, 4, seed=6).double() + 1) / 2
    lp = d.expand((3, 2)).log_prob(values[:, None, None])
    assert lp.shape == (5, 3, 2)
    torch.testing.assert_close(lp[:, 0, 0], d.log_prob(values))
    assert isinstance(d, CheckerboardLattice) and d.expand((3,)).sample((2,)).shape == (2, 3, 4, 4)
    pyro.set_rng_seed(0)
