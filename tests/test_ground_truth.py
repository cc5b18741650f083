"""Estimators against exact answers on probabilistic PCA, where log p(x), p(z|x) and the ELBO are exact."""

import math

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from vaezoo import ELBO, AmortizedNormal, ExactPosterior, LinearGaussian, fit, log_likelihood
from vaezoo.inference import run_pair

D, Z, N = 5, 2, 6


def make_model_and_data(n=N, seed=0):
    model = LinearGaussian(x_shape=(D,), z_dim=Z, noise_scale=0.5, seed=seed)
    with torch.no_grad():
        x = model.x_dist(torch.randn(n, Z, generator=torch.Generator().manual_seed(seed + 1))).sample()
    return model, x


def closed_form_elbo(model, guide, x):
    """E_q[log N(x; Wz+b, s^2 I)] - KL(q || N(0, I)) for the diagonal Gaussian q of ``guide``."""
    q = guide.site_dists(x)["z"].base_dist
    mu, var = q.loc, q.scale**2
    W, b, s2 = model.W, model.b, model.noise**2
    resid = x - mu @ W.T - b
    expected_log_lik = (
        -0.5 * D * math.log(2 * math.pi)
        - 0.5 * D * torch.log(s2)
        - (resid.pow(2).sum(-1) + (var * W.pow(2).sum(0)).sum(-1)) / (2 * s2)
    )
    kl = 0.5 * (mu.pow(2) + var - 1 - var.log()).sum(-1)
    return expected_log_lik - kl


def trained_guide(model, steps_epochs=30):
    """An amortized guide fitted to data from the model (the model's parameters frozen)."""
    with torch.no_grad():
        data = model.x_dist(torch.randn(512, Z, generator=torch.Generator().manual_seed(7))).sample()
    guide = AmortizedNormal(model, hidden=(32,), activation="tanh")
    for p in model.parameters():
        p.requires_grad_(False)
    fit(model, guide, data, ELBO(), epochs=steps_epochs, batch_size=64, lr=3e-3, progress=False)
    for p in model.parameters():
        p.requires_grad_(True)
    return guide


def test_exact_posterior_makes_every_weight_equal_log_px(float64):
    model, x = make_model_and_data()
    guide = ExactPosterior(model)
    exact = model.log_marginal(x)
    log_w = run_pair(model, guide, x, num_particles=7).log_weight()
    assert log_w.shape == (7, N)
    torch.testing.assert_close(log_w, exact.expand(7, N), rtol=0, atol=1e-10)
    result = log_likelihood(model, guide, x, k=3)
    torch.testing.assert_close(result.per_datapoint, exact.detach(), rtol=0, atol=1e-10)
    assert result.mc_stderr.abs().max() < 1e-6
    torch.testing.assert_close(ELBO(num_particles=2).bound(model, guide, x), exact, rtol=0, atol=1e-10)


def test_closed_form_elbo_never_exceeds_log_px(float64):
    model, x = make_model_and_data(n=50)
    for guide in (AmortizedNormal(model), trained_guide(model, 5)):
        gap = model.log_marginal(x) - closed_form_elbo(model, guide, x)
        assert (gap >= -1e-12).all(), gap.min()


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_estimate_is_unbiased(float64, analytic_kl):
    model, x = make_model_and_data()
    guide = AmortizedNormal(model)
    exact = closed_form_elbo(model, guide, x).detach()
    estimates = torch.stack(
        [ELBO(num_particles=200, analytic_kl=analytic_kl).bound(model, guide, x).detach() for _ in range(30)]
    )
    mean, se = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
    assert ((mean - exact).abs() <= 4 * se).all(), (mean - exact) / se
    assert (mean <= model.log_marginal(x).detach() + 4 * se).all()


def test_elbo_gradient_matches_closed_form_gradient(float64):
    model, x = make_model_and_data()
    guide = AmortizedNormal(model)
    params = [model.W, model.b, model.raw_noise, guide.head.bias, guide.head.weight]
    exact = torch.autograd.grad(closed_form_elbo(model, guide, x).sum(), params)
    samples = [
        torch.autograd.grad(ELBO(num_particles=100).bound(model, guide, x).sum(), params) for _ in range(40)
    ]
    for i, name in enumerate(["W", "b", "raw_noise", "head.bias", "head.weight"]):
        g = torch.stack([s[i] for s in samples])
        mean, se = g.mean(0), g.std(0) / math.sqrt(len(g))
        assert ((mean - exact[i]).abs() <= 4.5 * se + 1e-9).all(), (
            name,
            ((mean - exact[i]) / se).abs().max(),
        )


def test_importance_sampling_converges_within_reported_error(float64):
    model, x = make_model_and_data(n=20)
    guide = trained_guide(model)
    exact = model.log_marginal(x).mean().item()
    errors = []
    for k in (10, 100, 1000, 10000):
        r = log_likelihood(model, guide, x, k=k)
        # IS is a stochastic lower bound: bias about -mc_stderr^2 / 2, allowed twice over below.
        bias = r.mc_stderr.pow(2).mean().item()
        assert -4 * r.stderr - bias <= r.mean - exact <= 4 * r.stderr, (k, r.mean - exact, r.stderr)
        errors.append(r.stderr)
    assert errors[-1] < errors[0] / 10, "the Monte Carlo error must shrink like 1/sqrt(k)"


def test_reported_stderr_matches_the_spread_of_repeated_estimates(float64):
    model, x = make_model_and_data(n=5)
    guide = trained_guide(model)
    runs = [log_likelihood(model, guide, x, k=50) for _ in range(60)]
    spread = torch.stack([r.per_datapoint for r in runs]).std(0)
    reported = torch.stack([r.mc_stderr for r in runs]).mean(0)
    ratio = spread / reported
    assert ((ratio > 0.7) & (ratio < 1.4)).all(), ratio


@pytest.mark.parametrize(("analytic_kl", "reference"), [(False, Trace_ELBO), (True, TraceMeanField_ELBO)])
def test_matches_pyro_elbo_on_the_same_samples(float64, analytic_kl, reference):
    model, x = make_model_and_data()
    guide = AmortizedNormal(model)
    torch.manual_seed(3)
    ours = ELBO(analytic_kl=analytic_kl).differentiable_loss(model, guide, x) * N
    torch.manual_seed(3)
    theirs = reference().differentiable_loss(model, guide, x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-10)


def test_beta_scales_exactly_the_latent_term(float64):
    model, x = make_model_and_data()
    guide = AmortizedNormal(model)
    losses = {}
    for beta in (0.0, 0.5, 1.0):
        torch.manual_seed(5)
        losses[beta] = ELBO(beta=beta).differentiable_loss(model, guide, x)
    torch.testing.assert_close(losses[0.5], (losses[0.0] + losses[1.0]) / 2, rtol=1e-12, atol=1e-12)
    warm = ELBO(kl_warmup=10, beta=2.0)
    assert [warm.latent_weight(p) for p in (0, 5, 10, 50)] == [0.0, 1.0, 2.0, 2.0]
