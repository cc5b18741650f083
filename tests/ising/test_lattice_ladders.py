"""The ladders on the lattice: the Ladder VAE's guide and the VLAE with lattice latents, checked exactly.

Ground truths: the spin decoder's distribution sums to one over every state of a 4 x 4 lattice; the
Z2 symmetry p(-s, -z) = p(s, z) and q(-z | -s) = q(z | s) holds for generic parameters; the ladder's
merged q(z_l | z_{l+1}, s) is the normalized product of the bottom-up Gaussian and the model's prior.
"""

import math

import pyro
import pytest
import torch
from pyro import poutine

from tests.conftest import randomize
from vaezoo.analysis.block_spin_training import train_lattice_model
from vaezoo.analysis.perturb import perturb
from vaezoo.errors import ConfigError, DataError
from vaezoo.guides import IsingVLAEGuide, LatticeLadderGuide
from vaezoo.inference import ELBO, IWAE, run_pair
from vaezoo.inference.free_energy import free_energy_bound
from vaezoo.ising.exact import enumerate_states
from vaezoo.ising.lattice_data import lattice_dataset, lattice_input
from vaezoo.models import VAE, BlockSpin, IsingVLAE

SMALL = {"channels": 3, "depth": 1, "gain_hidden": 4}


def random_spins(n, L, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(n, L, L, generator=g) < 0.5, 1.0, -1.0)


def pairs():
    markov = BlockSpin(L=8, levels=2, latent="continuous", **SMALL)
    vlae = IsingVLAE(L=8, levels=2, **SMALL)
    return [(markov, LatticeLadderGuide(markov, **SMALL)), (vlae, IsingVLAEGuide(vlae, **SMALL))]


@pytest.mark.parametrize("which", [0, 1], ids=["ladder", "vlae"])
def test_sites_shapes_and_particles(which):
    model, guide = pairs()[which]
    x = lattice_input(random_spins(5, 8), T=2.3)
    pair = run_pair(model, guide, x, num_particles=3)
    assert sorted(pair.latent) == ["z1", "z2"] and pair.observed == ["x"]
    assert pair.guide_sites["z1"]["value"].shape == (3, 5, 4, 4)
    assert pair.guide_sites["z2"]["value"].shape == (3, 5, 2, 2)
    assert pair.log_weight().shape == (3, 5) and torch.isfinite(pair.log_weight()).all()
    for objective in (ELBO(), IWAE(k=3)):
        assert math.isfinite(objective.loss(model, guide, x))


@pytest.mark.parametrize("which", [0, 1], ids=["ladder", "vlae"])
def test_model_and_guide_are_z2_symmetric(which):
    model, guide = pairs()[which]
    randomize(model, guide, seed=3)  # generic parameters: a bias anywhere would break the symmetry
    s = random_spins(4, 8, seed=5)
    x, flipped = lattice_input(s, T=2.1), lattice_input(-s, T=2.1)
    q = poutine.trace(guide).get_trace(x)
    z = {n: q.nodes[n]["value"] for n in model.layer_sites}
    q_flip = poutine.trace(poutine.condition(guide, data={n: -v for n, v in z.items()})).get_trace(flipped)
    p = poutine.trace(poutine.condition(model, data=z)).get_trace(x)
    p_flip = poutine.trace(poutine.condition(model, data={n: -v for n, v in z.items()})).get_trace(flipped)
    for a, b in ((q, q_flip), (p, p_flip)):
        a.compute_log_prob()
        b.compute_log_prob()
        for name in a.stochastic_nodes:
            torch.testing.assert_close(a.nodes[name]["log_prob"], b.nodes[name]["log_prob"])
    assert p.nodes["x"]["log_prob"].abs().min() > 0  # the check compared real numbers


def test_vlae_spin_decoder_sums_to_one_over_all_states():
    model = IsingVLAE(L=4, levels=2, **SMALL).double()
    randomize(model, seed=7)
    K = torch.tensor([0.41], dtype=torch.float64)
    zs = [torch.randn(1, 2, 2, dtype=torch.float64), torch.randn(1, 1, 1, dtype=torch.float64)]
    states = enumerate_states(4, torch.float64)  # all 65,536 lattices
    log_p = model.spin_dist(zs, K).log_prob((states[:, None] + 1) / 2)
    torch.testing.assert_close(log_p.logsumexp(0), torch.zeros(1, dtype=torch.float64), atol=1e-9, rtol=0)


def test_ladder_merge_is_the_normalized_product_of_the_two_gaussians():
    model, guide = pairs()[0]
    randomize(model, guide, seed=2)
    x = lattice_input(random_spins(3, 8, seed=1), T=2.5)
    z2 = torch.randn(3, 2, 2)
    trace = poutine.trace(poutine.condition(guide, data={"z2": z2})).get_trace(x)
    z1 = trace.nodes["z1"]["value"]
    log_q = trace.nodes["z1"]["fn"].base_dist.log_prob(z1)
    mu_hat, sigma_hat = guide.bottom_up_estimates(x)[0]
    prior = model.level_dist(1, z2, x[:, 1, 0, 0]).base_dist
    normal = torch.distributions.Normal
    # N(z; a, s^2) N(z; b, t^2) = N(a; b, s^2 + t^2) N(z; merged): the merged density, by Bayes' rule.
    product = normal(mu_hat, sigma_hat).log_prob(z1) + prior.log_prob(z1)
    evidence = normal(prior.loc, (sigma_hat**2 + prior.scale**2).sqrt()).log_prob(mu_hat)
    torch.testing.assert_close(log_q, product - evidence, atol=1e-4, rtol=1e-4)


def test_kept_levels_markov_and_independent():
    markov = BlockSpin(L=8, levels=3, latent="continuous", **SMALL)
    vlae = IsingVLAE(L=8, levels=3, **SMALL)
    assert [markov.kept_levels(lv) for lv in range(4)] == [(1, 2, 3), (2, 3), (3,), ()]
    assert [vlae.kept_levels(lv) for lv in range(4)] == [(1, 2, 3), (2, 3), (1, 3), (1, 2)]


@pytest.mark.parametrize("which", [0, 1], ids=["ladder", "vlae"])
def test_perturb_and_bound_run_on_both(which):
    model, guide = pairs()[which]
    result = perturb(model, guide, random_spins(6, 8), T=2.3)
    assert [p.level for p in result.levels] == [0, 1, 2]
    assert all(((p.lattices == 1) | (p.lattices == -1)).all() for p in result.levels)
    fe = free_energy_bound(model, guide, 2.3, n=20)
    assert fe.value > fe.exact  # any r gives an upper bound; an untrained model is far above


def test_train_lattice_model_trains_the_vlae(tmp_path):
    pyro.clear_param_store()
    data = lattice_dataset(4, (2.0, 3.0), 40, method="exact", seed=0, progress=False).x
    model, guide, objective, history = train_lattice_model(
        data, model="ising_vlae", levels=1, guide="ising_vlae", epochs=2, batch_size=20,
        model_config=SMALL, guide_config=SMALL, out=str(tmp_path), progress=False,
    )
    assert isinstance(model, IsingVLAE) and objective.describe().startswith("elbo")
    assert [h["epoch"] for h in history] == [1, 2] and (tmp_path / "checkpoint.pt").exists()


def test_bad_inputs():
    binary = BlockSpin(L=8, levels=2, **SMALL)
    with pytest.raises(ConfigError, match="needs latent='continuous'"):
        LatticeLadderGuide(binary)
    with pytest.raises(ConfigError, match="block_spin"):
        LatticeLadderGuide(VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(4,)))
    with pytest.raises(ConfigError, match="ising_vlae"):
        IsingVLAEGuide(binary)
    with pytest.raises(ConfigError, match="not divisible"):
        IsingVLAE(L=6, levels=2)
    model = IsingVLAE(L=8, levels=2, **SMALL)
    with pytest.raises(DataError, match="built for L = 8"):
        model(lattice_input(random_spins(2, 4), T=2.0))


@pytest.mark.parametrize("latent", ["binary", "continuous"])
def test_block_amortized_reads_checkpoints_from_before_the_shared_rung(latent):
    from vaezoo.guides import BlockAmortized

    model = BlockSpin(L=8, levels=2, latent=latent, **SMALL)
    guide = BlockAmortized(model, **SMALL)
    randomize(guide, seed=4)
    # The state dict as it was written before OddBottomUp: no "rung." level, no scales when binary.
    old = {
        k.replace(".rung.", "."): v
        for k, v in guide.state_dict().items()
        if not (latent == "binary" and ".scale_" in k)
    }
    fresh = BlockAmortized(model, **SMALL)
    fresh.load_state_dict(old)
    spins, K = random_spins(3, 8), torch.full((3,), 0.45)
    for new, loaded in zip(guide.encoders, fresh.encoders, strict=True):
        da, db = new(spins, K).base_dist, loaded(spins, K).base_dist
        for attr in ("logits",) if latent == "binary" else ("loc", "scale"):
            torch.testing.assert_close(getattr(da, attr), getattr(db, attr), rtol=0, atol=0)


def test_reverse_kl_refuses_real_latents():
    from vaezoo.inference.reverse_kl import fit_free_energy

    model, guide = pairs()[1]
    with pytest.raises(ConfigError, match="real-valued latents"):
        fit_free_energy(model, guide, [2.3], steps=1)
