"""The sequential VAE and the stepwise objective: the paper's sum by hand, the honest bound, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from vaezoo import ConfigError, DataError
from vaezoo.inference import ELBO, MultiStage, Stepwise, log_likelihood, run_pair
from vaezoo.models import VAE, SequentialVAE
from vaezoo.models.auxiliary import AUXILIARY
from vaezoo.registry import build_guide

SMALL = {"x_shape": (1, 4, 4), "steps": 3, "z_dim": 2, "hidden": (5,)}


def binary(n, shape=(1, 4, 4), seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *shape), 0.4), generator=g)


def test_sites_shapes_and_auxiliary_stages():
    model = SequentialVAE(SMALL)
    guide = model.default_guide()
    x = binary(5)
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    latent = [n for n, s in m.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "data"]
    assert latent == ["z1", "z2", "z3"] == list(model.layer_sites)
    assert all(g.nodes[n]["value"].shape == (5, 2) for n in latent)
    site = m.nodes["x"]
    assert site["is_observed"] and site["fn"].event_shape == (1, 4, 4)
    auxiliary = site["infer"][AUXILIARY]
    assert len(auxiliary) == 2  # p_1 and p_2; p_3 is the observed site's own
    assert all(p.batch_shape == (5,) and p.event_shape == (1, 4, 4) for p in auxiliary)


def hand_terms(model, guide, x, seed):
    """(log p_1(x), ..., log p_n(x)) and the analytic KL, written out from the networks' weights."""
    dists = guide.site_dists(x)
    torch.manual_seed(seed)
    zs = [d.rsample() for d in dists.values()]  # the guide's draws, in its sampling order
    kl = sum(
        0.5 * (d.base_dist.scale**2 + d.base_dist.loc**2 - 1 - 2 * d.base_dist.scale.log()).sum(-1)
        for d in dists.values()
    )
    previous = torch.zeros_like(x).flatten(1)
    log_liks = []
    for i, z in enumerate(zs):
        net = model.step_nets[min(i, len(model.step_nets) - 1)].net
        logits = net(torch.cat([z, previous], -1))
        log_liks.append((x.flatten(1) * logits - F.softplus(logits)).sum(-1))
        previous = torch.sigmoid(logits)
    return log_liks, kl


@pytest.mark.parametrize("shared", [True, False])
def test_stepwise_objective_is_the_papers_sum_and_bound_is_the_elbo(float64, shared):
    model = SequentialVAE(SMALL, shared=shared)
    guide = model.default_guide()
    x = binary(6)
    log_liks, kl = hand_terms(model, guide, x, seed=11)
    torch.manual_seed(11)
    objective = Stepwise(auxiliary_weight=0.5).per_datapoint(model, guide, x)
    want = 0.5 * sum(log_liks[:-1]) + log_liks[-1] - kl
    assert torch.allclose(objective, want, rtol=1e-12, atol=1e-10)
    torch.manual_seed(11)
    paper = Stepwise().per_datapoint(model, guide, x)
    assert torch.allclose(paper, sum(log_liks) - kl, rtol=1e-12, atol=1e-10)
    # bound(): the ELBO of the program that observes x once, at the last step.
    torch.manual_seed(11)
    bound = Stepwise().bound(model, guide, x)
    assert torch.allclose(bound, log_liks[-1] - kl, rtol=1e-12, atol=1e-10)
    torch.manual_seed(11)
    assert torch.allclose(bound, ELBO().per_datapoint(model, guide, x), rtol=1e-12, atol=1e-10)


def test_proper_program_elbo_matches_its_log_weight_without_analytic_kl(float64):
    """The model's own log p(x, z) - log q(z | x) is the last step's likelihood plus the latent terms."""
    model = SequentialVAE(SMALL)
    guide = model.default_guide()
    x = binary(4)
    log_liks, _ = hand_terms(model, guide, x, seed=5)
    torch.manual_seed(5)
    pair = run_pair(model, guide, x, 1)
    assert torch.allclose(pair.log_p("x")[0], log_liks[-1], rtol=1e-12)
    latent = sum(pair.log_p(n) - pair.log_q(n) for n in pair.latent)[0]
    torch.manual_seed(5)
    assert torch.allclose(ELBO(analytic_kl=False).per_datapoint(model, guide, x), log_liks[-1] + latent)


def test_shared_and_unshared_parameter_counts():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    d, z, h, n = 16, 2, 5, 3
    one_step = (z + d) * h + h + h * d + d  # Linear(z + d -> h), Linear(h -> d)
    assert count(SequentialVAE(SMALL, shared=True)) == one_step
    assert count(SequentialVAE(SMALL, shared=False)) == n * one_step
    gaussian = SequentialVAE(SMALL, shared=False, likelihood="gaussian")
    assert count(gaussian) == n * (one_step + d)  # plus a per-pixel scale per step


def test_one_step_is_a_vae_with_the_image_input_zero(float64):
    """steps=1: the stepwise objective has no earlier stage and equals the ELBO."""
    model = SequentialVAE(SMALL, steps=1)
    guide = model.default_guide()
    x = binary(3)
    torch.manual_seed(2)
    a = Stepwise().per_datapoint(model, guide, x)
    torch.manual_seed(2)
    assert torch.allclose(a, ELBO().per_datapoint(model, guide, x), rtol=1e-12)


def test_importance_sampled_log_likelihood_runs_and_exceeds_the_bound():
    torch.manual_seed(0)
    model = SequentialVAE(SMALL)
    guide = model.default_guide()
    x = binary(8)
    estimate = log_likelihood(model, guide, x, k=200)
    assert estimate.per_datapoint.shape == (8,) and torch.isfinite(estimate.per_datapoint).all()
    torch.manual_seed(1)
    with torch.no_grad():
        draws = torch.stack([Stepwise(num_particles=10).bound(model, guide, x) for _ in range(20)])
    elbo, elbo_stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    # log p(x) >= ELBO (Jensen), up to three standard errors of the difference of the two estimates.
    stderr = (estimate.mc_stderr**2 + elbo_stderr**2).sqrt()
    assert (estimate.per_datapoint + 3 * stderr >= elbo).all()


def test_a_few_steps_of_the_papers_objective_lower_its_loss():
    torch.manual_seed(0)
    model = SequentialVAE(SMALL)
    guide = model.default_guide()
    x = binary(32)
    objective = Stepwise(num_particles=4)
    params = [*model.parameters(), *guide.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    torch.manual_seed(7)
    before = objective.loss(model, guide, x)
    for _ in range(40):
        opt.zero_grad()
        objective.differentiable_loss(model, guide, x).backward()
        opt.step()
    torch.manual_seed(7)
    assert objective.loss(model, guide, x) < before - 1.0


def test_zero_steps_is_a_config_error():
    with pytest.raises(ConfigError, match="steps"):
        SequentialVAE(SMALL, steps=0)


def test_real_valued_data_given_to_the_bernoulli_model():
    model = SequentialVAE(SMALL)
    with pytest.raises(DataError, match=r"Bernoulli likelihood.*binarize"):
        Stepwise().loss(model, model.default_guide(), torch.rand(3, 1, 4, 4))
    # The Gaussian one takes them.
    gaussian = SequentialVAE(SMALL, likelihood="gaussian")
    assert math.isfinite(Stepwise().loss(gaussian, gaussian.default_guide(), torch.rand(3, 1, 4, 4)))


def test_wrong_image_size_is_a_data_error():
    model = SequentialVAE(SMALL)
    with pytest.raises(DataError, match=r"x_shape=\(1, 5, 5\)"):
        Stepwise().loss(model, model.default_guide(), binary(3, (1, 5, 5)))


def test_paper_objectives_refuse_models_without_stages_and_detached_guides():
    vae = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(5,))
    with pytest.raises(ConfigError, match="stepwise.*carries none.*elbo"):
        Stepwise().loss(vae, vae.default_guide(), binary(2))
    model = SequentialVAE(SMALL)
    with pytest.raises(ConfigError, match="exactly one coarse stage.*carries 2"):
        MultiStage().check_pair(model, model.default_guide(), binary(2))
    refined = build_guide("hmc_refined", model, steps=1)
    with pytest.raises(ConfigError, match="detached.*'elbo'"):
        Stepwise().check_pair(model, refined, binary(2))
