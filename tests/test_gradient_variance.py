"""gradient_variance against the closed-form mean and variance of the pathwise ELBO gradient."""

import math

import pytest
import torch

from tests.test_score_function import SIGMA, setup
from vaezoo import ELBO, AmortizedNormal, ExactPosterior, LinearGaussian
from vaezoo.analysis import gradient_variance
from vaezoo.inference import IWAE, ScoreFunction

X = torch.tensor([-1.0, 0.5, 2.0, 3.0])
MU0, M, S = 0.3, -0.5, 0.8


pytestmark = pytest.mark.usefixtures("float64")  # every test here runs in float64


def exact_moments():
    """Mean, variance and 4th central moment of each coordinate's gradient of the batch-mean ELBO.

    With z = m + s eps, the single-sample pathwise estimate of datapoint i's ELBO gradient is
    d/dmu0 = z - mu0 = (m - mu0) + s eps;  d/dm = (x - z) / SIGMA^2 - (z - mu0) = a + b eps;
    d/dlog s = (a + b eps) s eps + 1,  with a = (x - m) / SIGMA^2 - (m - mu0), b = -(1 / SIGMA^2 + 1) s.
    The batch mean divides each by B.
    For A eps + C (eps^2 - 1): variance A^2 + 2 C^2, 4th moment 3 A^4 + 60 A^2 C^2 + 60 C^4.
    """
    B = len(X)
    a = (X - M) / SIGMA**2 - (M - MU0)
    b = -(1 / SIGMA**2 + 1) * S
    out = {}
    for name, mean, A, C in (
        ("model.mu0", torch.full((B,), M - MU0), torch.full((B,), S), torch.zeros(B)),
        ("guide.m", a, torch.full((B,), b), torch.zeros(B)),
        ("guide.log_s", torch.full((B,), 1 + b * S), a * S, torch.full((B,), b * S)),
    ):
        A, C = A / B, C / B
        out[name] = (mean / B, A**2 + 2 * C**2, 3 * A**4 + 60 * A**2 * C**2 + 60 * C**4)
    return out


def test_mean_and_variance_match_the_closed_form():
    n = 600
    model, guide, x = setup(len(X), x=X, mu0=MU0, m=M, s=S)
    stats = gradient_variance(model, guide, ELBO(analytic_kl=False), x, n=n, by="parameter")
    assert set(stats) == set(exact_moments())
    for name, (mean, var, m4) in exact_moments().items():
        got = stats[name]
        assert ((got.mean - mean).abs() <= 4 * got.mean_stderr).all(), (name, got.mean, mean)
        # Standard error of a sample variance: sqrt((m4 - var^2 (n - 3) / (n - 1)) / n).
        se_var = ((m4 - var**2 * (n - 3) / (n - 1)) / n).sqrt()
        assert ((got.variance - var).abs() <= 4 * se_var).all(), (name, got.variance, var, se_var)
        torch.testing.assert_close(got.snr, got.mean.abs() / got.variance.sqrt())
    assert model.mu0.grad is None and guide.m.grad is None, "the parameters' .grad must be left alone"


def test_groups_by_role_and_module_count_shared_parameters_once():
    model = LinearGaussian(x_shape=(4,))
    x = torch.randn(5, 4)
    stats = gradient_variance(model, AmortizedNormal(model, hidden=(8,)), IWAE(k=3), x, n=3, by="module")
    assert set(stats) == {"model.W", "model.b", "model.raw_noise", "guide.encoder", "guide.head"}
    assert stats["model.W"].mean.shape == (4 * model.z_dim,)
    shared = gradient_variance(model, ExactPosterior(model), IWAE(k=3), x, n=3)
    assert set(shared) == {"model"}
    assert shared["model"].mean.numel() == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="n must be >= 2"):
        gradient_variance(model, ExactPosterior(model), IWAE(k=3), x, n=1)


def test_the_pathwise_gradient_has_a_higher_snr_than_the_score_function():
    n = 400
    model, guide, x = setup(len(X), x=X, mu0=MU0, m=M, s=S)
    pathwise = gradient_variance(model, guide, ELBO(), x, n=n, by="parameter")["guide.m"]
    score = gradient_variance(model, guide, ScoreFunction(ELBO(), baseline="none"), x, n=n, by="parameter")
    score = score["guide.m"]
    # The same expected gradient, estimated twice ...
    se = (pathwise.mean_stderr**2 + score.mean_stderr**2).sqrt()
    assert ((pathwise.mean - score.mean).abs() <= 4 * se).all()
    # ... with a variance ratio far outside the sampling error of either variance (about 4 / sqrt(n)).
    ratio = score.variance / pathwise.variance
    assert (ratio > 1 + 8 / math.sqrt(n)).all(), ratio
    assert (score.snr < pathwise.snr).all()
