"""Guides that reduce amortization: per-datapoint optima (FFG, flow) and semi-amortized refinement,
checked on probabilistic PCA, whose posterior and log p(x) are exact and whose mean-field optimum
is known in closed form."""

import math

import pyro.distributions as dist
import pytest
import torch

from vaezoo import ELBO, AmortizedNormal, DataError, LinearGaussian, log_likelihood
from vaezoo.analysis.gap import elbo_estimate
from vaezoo.guides.local import LocalFlow, LocalNormal
from vaezoo.guides.semi_amortized import SemiAmortized
from vaezoo.inference.traces import run_pair


def pca_model(angle: float, z_dim: int = 2, seed: int = 0) -> LinearGaussian:
    """Probabilistic PCA whose two loading columns are unit vectors ``angle`` degrees apart.

    angle=90 makes W^T W diagonal, so the exact posterior is a diagonal Gaussian (FFG is exact);
    smaller angles correlate the posterior.
    """
    model = LinearGaussian(x_shape=(5,), z_dim=z_dim, noise_scale=0.5, seed=seed)
    q = torch.linalg.qr(torch.randn(5, z_dim, generator=torch.Generator().manual_seed(seed))).Q
    a = math.radians(angle)
    with torch.no_grad():
        model.W.copy_(q)
        model.W[:, 1] = math.cos(a) * q[:, 0] + math.sin(a) * q[:, 1]
    return model


def data(model, n=10, seed=1):
    with torch.no_grad():
        return model.x_dist(
            torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(seed))
        ).sample()


def kl_to_posterior(model, x, guide) -> torch.Tensor:
    """KL(q || p(z | x)) in closed form for a diagonal-Gaussian local guide, per datapoint."""
    q = dist.MultivariateNormal(guide.loc, scale_tril=torch.diag_embed(guide.log_scale.exp()))
    return torch.distributions.kl_divergence(q, model.posterior(x)["z"]).detach()


def mean_field_gap(model, x) -> torch.Tensor:
    """min over diagonal Gaussian q of KL(q || N(m, Lambda^-1)) = (sum log Lambda_ii - log det Lambda) / 2."""
    prec = model.posterior(x)["z"].precision_matrix
    return (0.5 * (prec.diagonal(dim1=-2, dim2=-1).log().sum(-1) - torch.logdet(prec))).detach()


# Optimization tolerance: how close (in nats of KL) fit_local must get to the optimum.
CONVERGED = 0.01


@pytest.mark.parametrize("angle", [90.0, 30.0])
def test_local_normal_reaches_the_mean_field_optimum(float64, angle):
    model = pca_model(angle)
    x = data(model)
    guide = LocalNormal(model, n_data=len(x))
    guide.fit_local(x, lr=0.05)
    kl, best = kl_to_posterior(model, x, guide), mean_field_gap(model, x)
    if angle == 90.0:
        assert best.abs().max() < 1e-12  # the posterior is diagonal: FFG is exact
    else:
        assert best.min() > 0.3  # a clearly non-zero approximation gap to find
    assert (kl - best).max() < CONVERGED, kl - best
    post = model.posterior(x)["z"]
    torch.testing.assert_close(guide.loc, post.loc.detach(), atol=0.05, rtol=0)
    # The reported bound estimates log p(x) - KL(q || posterior), to within its standard error.
    bound = elbo_estimate(model, guide, x, k=4000)
    gap = model.log_marginal(x).detach() - bound.per_datapoint
    assert ((gap - kl).abs() <= 4 * bound.mc_stderr + 1e-9).all(), (gap - kl) / bound.mc_stderr


def test_local_guides_refuse_another_batch(float64):
    model = pca_model(30.0)
    x = data(model, n=4)
    guide = LocalNormal(model, n_data=4)
    with pytest.raises(DataError, match="one batch of 4 datapoints"):
        run_pair(model, guide, x[:3])
    guide.fit_local(x, steps=2)
    with pytest.raises(DataError, match="fit_local"):
        run_pair(model, guide, x.flip(0))


def test_local_flow_log_density_is_the_change_of_variables(float64):
    model = pca_model(30.0, z_dim=3)
    flow = LocalFlow(model, n_data=2, flows=2, hidden=4)
    with torch.no_grad():
        for p in flow.nets:
            p.normal_(0, 0.7)  # a non-trivial map (the last layers start at zero)
    z0 = torch.randn(2, 3)
    jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v)[0], z0)  # (2, 3, 2, 3)
    for i in range(2):
        sign, log_abs_det = torch.linalg.slogdet(jac[i, :, i, :])
        assert sign > 0
        torch.testing.assert_close(flow.transform(z0)[1][i], log_abs_det)


def test_local_flow_beats_ffg_on_a_correlated_posterior_and_is_a_valid_proposal(float64):
    model = pca_model(30.0)
    x = data(model, n=6)
    exact = model.log_marginal(x).detach()
    ffg = LocalNormal(model, n_data=len(x))
    ffg.fit_local(x, lr=0.05)
    flow = LocalFlow(model, n_data=len(x), hidden=20)
    flow.init_from(ffg, x)
    flow.fit_local(x, lr=0.05)
    l_ffg, l_flow = elbo_estimate(model, ffg, x, 4000), elbo_estimate(model, flow, x, 4000)
    gap_ffg, gap_flow = (exact - l_ffg.per_datapoint).mean(), (exact - l_flow.per_datapoint).mean()
    se = math.hypot(l_ffg.stderr, l_flow.stderr)
    assert gap_flow < gap_ffg - 4 * se, (gap_flow, gap_ffg, se)
    assert gap_flow > -4 * l_flow.stderr  # still a lower bound
    # Importance sampling with the flow as proposal is exact in expectation only if log q is right.
    r = log_likelihood(model, flow, x, k=2000)
    bias = r.mc_stderr.pow(2).mean().item()
    assert -4 * r.stderr - bias <= r.mean - exact.mean().item() <= 4 * r.stderr


def seeded_loss(guide, model, x, seed=3):
    torch.manual_seed(seed)
    return ELBO().differentiable_loss(model, guide, x)


def test_semi_amortized_gradient_is_the_derivative_through_the_steps(float64):
    model = pca_model(30.0)
    x = data(model, n=5)
    encoder = AmortizedNormal(model, hidden=(6,))
    guide = SemiAmortized(model, guide=encoder, steps=3, lr=0.1, max_grad_norm=0.0)
    params = list(encoder.parameters())
    grads = torch.autograd.grad(seeded_loss(guide, model, x), params)
    direction = [torch.randn_like(p) for p in params]
    h = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            p.add_(h * d)
        up = seeded_loss(guide, model, x)
        for p, d in zip(params, direction, strict=True):
            p.sub_(2 * h * d)
        down = seeded_loss(guide, model, x)
        for p, d in zip(params, direction, strict=True):
            p.add_(h * d)
    numeric = (up - down) / (2 * h)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction, strict=True))
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)

    krishnan = SemiAmortized(model, guide=encoder, steps=3, lr=0.1, max_grad_norm=0.0, backprop=False)
    other = torch.autograd.grad(seeded_loss(krishnan, model, x), params)
    along = sum((g * d).sum() for g, d in zip(other, direction, strict=True))
    assert (along - numeric).abs() > 1e-3 * numeric.abs()  # not the derivative through the steps


def test_semi_amortized_without_steps_is_its_encoder(float64):
    model = pca_model(30.0)
    x = data(model, n=5)
    encoder = AmortizedNormal(model, hidden=(6,))
    guide = SemiAmortized(model, guide=encoder, steps=0)
    torch.testing.assert_close(seeded_loss(guide, model, x), seeded_loss(encoder, model, x))


@pytest.mark.parametrize("backprop", [True, False])
def test_semi_amortized_refinement_raises_the_bound(float64, backprop):
    model = pca_model(30.0)
    x = data(model, n=20)
    encoder = AmortizedNormal(model, hidden=(6,))
    guide = SemiAmortized(model, guide=encoder, steps=20, lr=0.1, backprop=backprop)
    before, after = elbo_estimate(model, encoder, x, 500), elbo_estimate(model, guide, x, 500, chunk=500)
    gain = after.mean - before.mean
    assert gain > 4 * math.hypot(before.stderr, after.stderr), (gain, before.stderr, after.stderr)
    exact = model.log_marginal(x).detach().mean().item()
    assert after.mean <= exact - mean_field_gap(model, x).mean().item() + 4 * after.stderr
