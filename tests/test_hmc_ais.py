"""HMC kernel, log densities at given latents, HMC-refined guide and AIS, against exact Gaussian answers."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule

from vaezoo import ELBO, AmortizedNormal, ConfigError, LinearGaussian
from vaezoo.guides.hmc_refined import HMCRefined
from vaezoo.guides.semi_amortized import SemiAmortized
from vaezoo.inference.ais import ais_log_likelihood, schedule
from vaezoo.inference.hmc import HMC, evaluate
from vaezoo.inference.potential import log_joint
from vaezoo.inference.traces import run_pair
from vaezoo.registry import build_model
from vaezoo.sites import LatentLayout


def gaussian_target():
    """Two 'datapoints', each a correlated 2-D Gaussian target (means, covariances)."""
    mean = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    cov = torch.tensor([[[1.0, 1.8], [1.8, 4.0]], [[0.25, -0.1], [-0.1, 0.5]]])
    return mean, cov, dist.MultivariateNormal(mean, covariance_matrix=cov)


def assert_moments_match(z, mean, cov, sigmas=4.0):
    """Sample mean and covariance of iid draws ``z`` ``(c, batch, D)`` within ``sigmas`` standard errors."""
    c = z.shape[0]
    m = z.mean(0)
    se_m = z.std(0) / math.sqrt(c)
    assert ((m - mean).abs() <= sigmas * se_m).all(), (m - mean) / se_m
    d = z - mean
    prods = d.unsqueeze(-1) * d.unsqueeze(-2)  # (c, batch, D, D), unbiased for cov given the true mean
    se_c = prods.std(0) / math.sqrt(c)
    assert ((prods.mean(0) - cov).abs() <= sigmas * se_c).all(), (prods.mean(0) - cov) / se_c


def test_hmc_leaves_a_correlated_gaussian_invariant(float64):
    # Started at the target, an invariant kernel keeps every chain's state distributed as the
    # target; 4000 independent chains per datapoint give iid draws to check moments on.
    mean, cov, target = gaussian_target()
    kernel = HMC(step_size=0.3, leapfrog_steps=5, adapt=False)
    state = kernel.run(target.log_prob, target.sample((4000,)), steps=20)
    assert_moments_match(state.z, mean, cov)
    assert 0.5 < kernel.accept_rate < 0.99
    torch.testing.assert_close(state.log_prob, target.log_prob(state.z))


def test_hmc_without_metropolis_test_would_fail_the_moment_check(float64):
    # The moment check has power: a too-large step accepted blindly inflates the variance.
    mean, cov, target = gaussian_target()
    eps = 0.5
    z = target.sample((4000,))
    for _ in range(20):
        p = torch.randn_like(z)
        for _ in range(3):  # leapfrog steps, every trajectory's end accepted
            p = p + 0.5 * eps * evaluate(target.log_prob, z).grad
            z = z + eps * p
            p = p + 0.5 * eps * evaluate(target.log_prob, z).grad
    with pytest.raises(AssertionError):
        assert_moments_match(z, mean, cov)


@pytest.mark.parametrize("start", [1e-3, 1.5])
def test_step_size_adapts_toward_target_acceptance(float64, start):
    _, _, target = gaussian_target()
    kernel = HMC(step_size=start, leapfrog_steps=5, target_accept=0.65, adapt=True, per_datapoint=True)
    state = kernel.run(target.log_prob, target.sample((200,)), steps=200)
    adapting = []
    for _ in range(200):
        state, accept = kernel.step(target.log_prob, state)
        adapting.append(accept.mean(0))
    # Constant-gain adaptation has mean acceptance at the target once settled (40k transitions per
    # datapoint here, MC error < 0.01) ...
    assert ((torch.stack(adapting).mean(0) - 0.65).abs() < 0.03).all(), torch.stack(adapting).mean(0)
    kernel.adapt = False
    frozen = []
    for _ in range(50):
        state, accept = kernel.step(target.log_prob, state)
        frozen.append(accept.mean(0))
    # ... and the step size it stops at (within about gain * 0.1 = 1% of equilibrium) keeps it there.
    assert ((torch.stack(frozen).mean(0) - 0.65).abs() < 0.05).all(), torch.stack(frozen).mean(0)


def test_log_joint_is_the_closed_form_even_inside_a_particle_plate(float64):
    model = LinearGaussian(x_shape=(5,), z_dim=2)
    x = torch.randn(3, 5)
    z = torch.randn(4, 3, 2)
    exact = model.z_dist(x).log_prob(z) + model.x_dist(z).log_prob(x)
    torch.testing.assert_close(log_joint(model, x, {"z": z}), exact)
    with pyro.plate("particles", 7, dim=-2):  # as when called from a guide inside an objective
        torch.testing.assert_close(log_joint(model, x, {"z": z}), exact)


class CoinModel(PyroModule):
    """A model with a discrete latent, which no HMC or local Gaussian guide can serve."""

    max_plate_nesting = 1

    def example_x(self, n=1):
        return torch.zeros(n, 2)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("coin", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c.unsqueeze(-1).expand(-1, 2), 1.0).to_event(1), obs=x)


def test_discrete_latents_are_refused_naming_the_site():
    with pytest.raises(ConfigError, match=r"\['coin'\]"):
        LatentLayout(CoinModel(), "AIS")
    with pytest.raises(ConfigError, match=r"\['coin'\]"):
        ais_log_likelihood(CoinModel(), torch.zeros(2, 2))


def test_the_layout_reads_a_batch_norm_model_without_moving_its_statistics():
    model = build_model("lvae", x_shape=(1, 4, 4), z_dims=(3, 2), hidden=(8,), batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layout = LatentLayout(model, "AIS")
    assert layout.names == ["z2", "z1"] and layout.dim == 5 and model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_sigmoid_schedule_runs_from_zero_to_one():
    betas = schedule(10)
    assert len(betas) == 12 and betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()


def lg_model_and_data(n, seed=0):
    model = LinearGaussian(x_shape=(5,), z_dim=2, noise_scale=0.5, seed=seed)
    with torch.no_grad():
        x = model.x_dist(torch.randn(n, 2, generator=torch.Generator().manual_seed(seed + 1))).sample()
    return model, x


def test_ais_agrees_with_exact_log_px(float64):
    model, x = lg_model_and_data(20)
    exact = model.log_marginal(x).detach()
    r = ais_log_likelihood(model, x, n_intermediate=200, n_chains=16, leapfrog_steps=5, step_size=0.1)
    assert r.per_datapoint.shape == (20,) and r.k == 16
    bias = r.mc_stderr.pow(2).mean().item()  # log-mean-exp is low by about mc_stderr^2 / 2
    assert -4 * r.stderr - bias <= r.mean - exact.mean().item() <= 4 * r.stderr, (
        r.mean,
        exact.mean(),
        r.stderr,
    )
    assert 0.3 < r.accept_rate < 0.95
    assert "AIS chains=16" in str(r)


def test_ais_with_few_intermediate_distributions_reports_larger_error(float64):
    model, x = lg_model_and_data(20)
    short = ais_log_likelihood(model, x, n_intermediate=2, n_chains=16, leapfrog_steps=2)
    long = ais_log_likelihood(model, x, n_intermediate=200, n_chains=16, leapfrog_steps=5)
    assert short.stderr > 2 * long.stderr


def test_hmc_refined_samples_match_the_exact_posterior(float64):
    model, x = lg_model_and_data(3)
    guide = HMCRefined(model, guide=AmortizedNormal(model), steps=40, leapfrog_steps=5, step_size=0.1)
    pair = run_pair(model, guide, x, num_particles=4000)  # 4000 independent chains per datapoint
    z = pair.guide_sites["z"]["value"]
    post = model.posterior(x)["z"]
    assert_moments_match(z.detach(), post.loc.detach(), post.covariance_matrix.detach())
    assert 0 < guide.accept_rate < 1
    assert guide.step_size.item() != 0.1  # adapted in training mode, kept in the guide's state


def test_hmc_refined_objective_is_the_encoders_bound_with_hoffmans_gradients(float64):
    model, x = lg_model_and_data(4)
    encoder = AmortizedNormal(model, hidden=(8,))
    guide = HMCRefined(model, guide=encoder, steps=3)
    params = {"decoder": [model.W, model.b, model.raw_noise], "encoder": list(encoder.parameters())}

    torch.manual_seed(1)
    pair = run_pair(model, guide, x, 6)
    refined_value = pair.log_weight()
    z_T = pair.guide_sites["z"]["value"]
    got = torch.autograd.grad(refined_value.sum(), params["decoder"] + params["encoder"])

    torch.manual_seed(1)  # the guide draws z_0 first, so the encoder sees the same z_0 here
    encoder_pair = run_pair(model, encoder, x, 6)
    encoder_value = encoder_pair.log_weight()
    torch.testing.assert_close(refined_value, encoder_value)
    want_encoder = torch.autograd.grad(encoder_value.sum(), params["encoder"])
    log_p_T = model.z_dist(x).log_prob(z_T) + model.x_dist(z_T).log_prob(x)
    want_decoder = torch.autograd.grad(log_p_T.sum(), params["decoder"])
    for g, w in zip(got, want_decoder + want_encoder, strict=True):
        torch.testing.assert_close(g, w)
    assert (z_T != encoder_pair.guide_sites["z"]["value"]).all(-1).float().mean() > 0.5  # HMC moved


def test_hmc_refines_a_guide_that_itself_runs_nested_refinement_steps():
    model = LinearGaussian(x_shape=(5,), z_dim=2)
    base = SemiAmortized(model, guide=AmortizedNormal(model, hidden=(8,)), steps=2, lr=0.1)
    guide = HMCRefined(model, guide=base, steps=1, leapfrog_steps=2)
    loss = ELBO(num_particles=2).differentiable_loss(model, guide, torch.randn(4, 5))
    assert torch.isfinite(loss)
