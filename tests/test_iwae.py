"""The IWAE bound on probabilistic PCA (exact log p(x)) and the DReG gradient on conjugate models."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from tests.test_ground_truth import N, make_model_and_data
from tests.test_score_function import assert_less_variance, assert_same_mean, draws, setup
from vaezoo import ELBO, AmortizedNormal, ConfigError, ExactPosterior
from vaezoo.inference import IWAE

pytestmark = pytest.mark.usefixtures("float64")  # every test here runs in float64


def test_iwae_1_is_the_elbo_on_the_same_random_numbers():
    model, x = make_model_and_data()
    guide = AmortizedNormal(model)
    torch.manual_seed(3)
    iwae = IWAE(k=1).differentiable_loss(model, guide, x)
    torch.manual_seed(3)
    elbo = ELBO(analytic_kl=False).differentiable_loss(model, guide, x)
    torch.testing.assert_close(iwae, elbo, rtol=0, atol=1e-12)


def test_iwae_bound_rises_with_k_toward_log_px():
    model, x = make_model_and_data()
    guide = AmortizedNormal(model, hidden=(16,))
    exact = model.log_marginal(x).detach()
    means, ses = [], []
    repeats = 400
    with torch.no_grad():
        for k in (1, 5, 50, 500):
            # The batch repeated: one vectorized call gives `repeats` independent bounds per datapoint.
            runs = IWAE(k=k).bound(model, guide, x.repeat(repeats, 1)).reshape(repeats, N)
            means.append(runs.mean(0))
            ses.append(runs.std(0) / math.sqrt(len(runs)))
            # A lower bound: never above log p(x) beyond its Monte Carlo error.
            assert (means[-1] <= exact + 4 * ses[-1]).all(), (k, (means[-1] - exact) / ses[-1])
    for i in range(3):
        rise, se = means[i + 1] - means[i], (ses[i] ** 2 + ses[i + 1] ** 2).sqrt()
        # Monotone in expectation: no datapoint's bound falls (beyond its error) as k grows, and on
        # average over the datapoints every step up in k is a significant rise.
        assert (rise > -4 * se).all(), (i, rise / se)
        assert rise.mean() > 4 * se.pow(2).mean().sqrt() / math.sqrt(N), (i, rise.mean(), se)
    assert ((exact - means[-1]) < (exact - means[0]) / 5).all(), "IWAE-500 must close most of the ELBO's gap"


@pytest.mark.parametrize("dreg", [False, True])
def test_exact_posterior_makes_every_iwae_bound_log_px(dreg):
    model, x = make_model_and_data()
    guide = ExactPosterior(model)
    exact = model.log_marginal(x)
    for k in (1, 5, 50, 500):
        torch.testing.assert_close(
            IWAE(k=k, dreg=dreg).per_datapoint(model, guide, x), exact, rtol=0, atol=1e-10
        )


def test_dreg_keeps_the_value_and_the_model_gradient_and_changes_the_guide_gradient():
    model, x = make_model_and_data()
    guide = AmortizedNormal(model, hidden=(16,))
    model_params, guide_params = list(model.parameters()), list(guide.parameters())
    results = {}
    for dreg in (False, True):
        torch.manual_seed(11)
        loss = IWAE(k=10, dreg=dreg).differentiable_loss(model, guide, x)
        results[dreg] = (loss, torch.autograd.grad(loss, model_params + guide_params))
    torch.testing.assert_close(results[True][0], results[False][0], rtol=0, atol=1e-12)
    model_grads = [results[dreg][1][: len(model_params)] for dreg in (True, False)]
    for a, b in zip(*model_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    guide_grads = [results[dreg][1][len(model_params) :] for dreg in (True, False)]
    assert any(not torch.allclose(a, b) for a, b in zip(*guide_grads, strict=True))


def test_dreg_is_unbiased_with_lower_variance_for_large_k():
    n, k = 4000, 50
    model, guide, x = setup(n, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    iwae = draws(IWAE(k=k), model, guide, x)
    dreg = draws(IWAE(k=k, dreg=True), model, guide, x)
    assert_same_mean(dreg, iwae, "dreg vs iwae")
    assert_less_variance(dreg, iwae, "dreg vs iwae")


def test_dreg_is_unbiased_at_partial_latent_weight():
    # The coefficient (1 - beta) w + beta w^2 of a down-weighted latent term (KL warm-up).
    n, k = 4000, 5
    model, guide, x = setup(n, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    grads = {}
    for dreg in (False, True):
        loss = -IWAE(k=k, dreg=dreg).per_datapoint(model, guide, x, latent_weight=0.4).mean()
        g = torch.autograd.grad(-loss, [guide.m, guide.log_s])
        grads[dreg] = {"m": g[0] * n, "log_s": g[1] * n}
    assert_same_mean(grads[True], grads[False], "dreg vs iwae, latent weight 0.4")


class TwoLevel(PyroModule):
    """z1 ~ N(mu0, 1);  z2 ~ N(z1, 1);  x ~ N(z2, 0.5^2);  one mu0 per datapoint."""

    max_plate_nesting = 1

    def __init__(self, batch):
        super().__init__()
        self.mu0 = nn.Parameter(torch.full((batch,), 0.3))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(self.mu0, 1.0))
            z2 = pyro.sample("z2", dist.Normal(z1, 1.0))
            pyro.sample("x", dist.Normal(z2.unsqueeze(-1), 0.5).to_event(1), obs=x)


class TwoLevelGuide(PyroModule):
    """q(z1) = N(m1, s1^2);  q(z2 | z1) = N(a z1 + m2, s2^2): z2's sample depends on z1's."""

    def __init__(self, batch):
        super().__init__()
        for name, value in (("m1", -0.5), ("log_s1", -0.3), ("a", 0.8), ("m2", 0.2), ("log_s2", -0.5)):
            setattr(self, name, nn.Parameter(torch.full((batch,), value)))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(self.m1, self.log_s1.exp()))
            pyro.sample("z2", dist.Normal(self.a * z1 + self.m2, self.log_s2.exp()))


def test_dreg_follows_the_path_through_a_hierarchical_guide():
    n, k = 4000, 10
    model, guide, x = TwoLevel(n), TwoLevelGuide(n), torch.full((n, 1), 2.0)
    names = ["m1", "log_s1", "a", "m2", "log_s2"]
    grads = {}
    for dreg in (False, True):
        loss = IWAE(k=k, dreg=dreg).differentiable_loss(model, guide, x)
        g = torch.autograd.grad(-loss, [getattr(guide, p) for p in names])
        grads[dreg] = {p: gi * n for p, gi in zip(names, g, strict=True)}
    assert_same_mean(grads[True], grads[False], "hierarchical dreg vs iwae")


def test_bad_k_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'k' = 0 .*>= 1"):  # the config validator's wording
        IWAE(k=0)


class NoisyGuide(PyroModule):
    """A guide drawing a random number besides its sample site (as dropout would), or a detached sample."""

    def __init__(self, batch, detach=False):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(batch))
        self.detach = detach

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            if self.detach:
                pyro.sample("z", dist.Delta(dist.Normal(self.m, 1.0).rsample().detach()))
            else:
                pyro.sample("z", dist.Normal(self.m + 0.1 * torch.randn(()), 1.0))


def test_dreg_refuses_guides_it_cannot_re_evaluate():
    model, _, x = setup(3)
    with pytest.raises(ConfigError, match="different value the second time"):
        IWAE(k=2, dreg=True).differentiable_loss(model, NoisyGuide(3), x)
    with pytest.raises(ConfigError, match="detached"):
        IWAE(k=2, dreg=True).differentiable_loss(model, NoisyGuide(3, detach=True), x)
