"""free_bits against hand-computed values: a model whose x does not depend on z, so log p(x | z) is
the standard normal density and every KL is the closed form of two Gaussians worked out below."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from vaezoo import ConfigError, build_objective
from vaezoo.inference import ELBO, FreeBits, run_pair, site_dims

X = torch.tensor([[0.5], [-1.0]], dtype=torch.float64)
# guide: q(z1 | x) = N(a1 x, 0.9^2) over 2 dims, q(z2 | x) = N(a2 x, 0.5^2) over 3 dims
A1, S1, A2, S2 = 0.1, 0.9, 2.0, 0.5


def model(x):
    n = x.shape[0]
    with pyro.plate("data", n):
        pyro.sample("z1", dist.Normal(x.new_zeros(()), 1.0).expand([n, 2]).to_event(1))
        pyro.sample("z2", dist.Normal(x.new_zeros(()), 1.0).expand([n, 3]).to_event(1))
        pyro.sample("x", dist.Normal(x.new_zeros(()), 1.0).expand([n, 1]).to_event(1), obs=x)


class Guide:
    def __init__(self):
        self.a1 = torch.tensor(A1, dtype=torch.float64, requires_grad=True)
        self.a2 = torch.tensor(A2, dtype=torch.float64, requires_grad=True)

    def __call__(self, x):
        n = x.shape[0]
        with pyro.plate("data", n):
            pyro.sample("z1", dist.Normal(self.a1 * x.expand(n, 2), S1).to_event(1))
            pyro.sample("z2", dist.Normal(self.a2 * x.expand(n, 3), S2).to_event(1))


def kl_per_dim(m: float, s: float) -> float:
    """KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1) / 2 - log s."""
    return (s * s + m * m - 1) / 2 - math.log(s)


def log_normal(x: float) -> float:
    return -0.5 * x * x - 0.5 * math.log(2 * math.pi)


XS = [0.5, -1.0]
KL1 = [2 * kl_per_dim(A1 * x, S1) for x in XS]  # 0.0212, 0.0217: far below 0.25 x 2
KL2 = [3 * kl_per_dim(A2 * x, S2) for x in XS]  # 2.454, 6.954: mean 4.70, above 0.25 x 3


def test_site_dims():
    pair = run_pair(model, Guide(), X, 4)
    assert [site_dims(pair, n) for n in ("z1", "z2")] == [2, 3]


@pytest.mark.parametrize("particles", [1, 3])
def test_one_site_clamped(particles):
    lam = 0.25
    got = FreeBits(lam=lam, num_particles=particles).per_datapoint(model, Guide(), X)
    want = [log_normal(x) - lam * 2 - kl2 for x, kl2 in zip(XS, KL2, strict=True)]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    bound = FreeBits(lam=lam).bound(model, Guide(), X)
    elbo = [log_normal(x) - k1 - k2 for x, k1, k2 in zip(XS, KL1, KL2, strict=True)]
    assert bound.tolist() == pytest.approx(elbo, abs=1e-12)
    assert ELBO().bound(model, Guide(), X).tolist() == pytest.approx(elbo, abs=1e-12)


def test_clamp_uses_the_batch_mean_not_each_datapoint():
    # z2's KL per dimension is 0.818 and 2.318 for the two datapoints (mean 1.568). lambda = 1: the
    # first datapoint alone is below the floor, the mean is not, so z2 is not clamped for either.
    got = FreeBits(lam=1.0).per_datapoint(model, Guide(), X)
    want = [log_normal(x) - 1.0 * 2 - kl2 for x, kl2 in zip(XS, KL2, strict=True)]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    # lambda = 1.6: the second datapoint alone is above the floor, the mean is below: both clamped.
    got = FreeBits(lam=1.6).per_datapoint(model, Guide(), X)
    want = [log_normal(x) - 1.6 * 2 - 1.6 * 3 for x in XS]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_gradients_flow_only_through_unclamped_sites():
    guide = Guide()
    FreeBits(lam=0.25).differentiable_loss(model, guide, X).backward()
    assert guide.a1.grad == 0
    # d/da2 of the mean KL of z2: 3 * mean(a2 x^2) = 3 * 2 * (0.25 + 1) / 2
    assert guide.a2.grad.item() == pytest.approx(3 * A2 * (0.25 + 1.0) / 2, abs=1e-12)
    # lambda = 0: no clamping at all, the ELBO's gradient for both sites
    guide = Guide()
    FreeBits(lam=0.0).differentiable_loss(model, guide, X).backward()
    assert guide.a1.grad.item() == pytest.approx(2 * A1 * (0.25 + 1.0) / 2, abs=1e-12)


def test_bad_lambda():
    with pytest.raises(ConfigError, match="lam"):
        build_objective("free_bits", lam=-1.0)
