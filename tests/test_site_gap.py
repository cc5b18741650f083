"""The amortization gap per latent site, checked where the posterior is exact: probabilistic PCA and a
two-layer linear-Gaussian hierarchy whose encoder is wrong in one layer only."""

import json

import pyro
import pyro.distributions as dist
import pytest
import torch

from tests.test_cli import run_train
from tests.test_local_guides import data, pca_model
from vaezoo import ELBO, AmortizedNormal, ConfigError, LinearGaussian
from vaezoo.analysis.gap import amortization_gap
from vaezoo.analysis.site_gap import ELBO_KEY, RECON, pair_terms, site_gaps, site_terms
from vaezoo.cli import main
from vaezoo.guides.bound import BoundGuide
from vaezoo.guides.local import LocalFlow
from vaezoo.guides.local_correction import LocalCorrection
from vaezoo.inference.traces import run_pair
from vaezoo.registry import build_guide

CONVERGED = 0.01  # optimization tolerance of the local fits, in nats (as in test_local_guides)
FIT = {"local_lr": 0.05, "local_steps": 2000, "eval_k": 2000}


class TwoLayerGaussian(LinearGaussian):
    """z2 ~ N(0, I);  z1 ~ N(z2, t^2 I);  x ~ N(W z1 + b, s^2 I): every posterior is Gaussian."""

    t = 0.7
    layer_sites = ("z1", "z2")

    def forward(self, x):
        self.check_x(x)
        n, d = x.shape[0], self.z_dim
        with pyro.plate("data", n):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(()), 1.0).expand([n, d]).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2, self.t).to_event(1))
            pyro.sample("x", self.x_dist(z1), obs=x)

    def log_marginal(self, x):
        W, s2 = self.W, self.noise**2
        cov = (1 + self.t**2) * W @ W.T + s2 * torch.eye(W.shape[0], dtype=W.dtype)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x.flatten(1))

    def top_posterior(self, x):
        """p(z2 | x): z1 | x is PCA with prior variance 1 + t^2, and z2 | z1 ~ N(z1 / (1 + t^2), .)."""
        W, s2, v = self.W, self.noise**2, 1 + self.t**2
        eye = torch.eye(self.z_dim, dtype=W.dtype)
        s1 = torch.linalg.inv(eye / v + W.T @ W / s2)
        m1 = (x.flatten(1) - self.b) @ W @ s1.T / s2
        return dist.MultivariateNormal(m1 / v, covariance_matrix=self.t**2 / v * eye + s1 / v**2)

    def bottom_conditional(self, x, z2):
        """p(z1 | z2, x), exact."""
        W, s2 = self.W, self.noise**2
        cov = torch.linalg.inv(torch.eye(self.z_dim, dtype=W.dtype) / self.t**2 + W.T @ W / s2)
        loc = (z2 / self.t**2 + (x.flatten(1) - self.b) @ W / s2) @ cov.T
        return dist.MultivariateNormal(loc, covariance_matrix=cov)


class WrongTop(BoundGuide):
    """q(z2 | x) = p(z2 | x) moved by ``shift``; q(z1 | z2, x) = p(z1 | z2, x) exactly."""

    def __init__(self, model, shift):
        super().__init__(model)
        self.shift = shift

    def forward(self, x):
        top = self.model.top_posterior(x)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.MultivariateNormal(top.loc + self.shift, top.covariance_matrix))
            pyro.sample("z1", self.model.bottom_conditional(x, z2))


def within(e, value, extra=0.0):
    return abs(e.mean - value) <= 4 * e.stderr + extra


def test_terms_are_the_elbo_and_parts_sum_to_the_gap_exactly(float64):
    model = pca_model(30.0)
    x = data(model, n=6)
    guide = AmortizedNormal(model)
    pair = run_pair(model, guide, x, 7)
    terms = pair_terms(pair)
    torch.testing.assert_close(terms[ELBO_KEY], ELBO().particle_terms(pair), rtol=0, atol=0)
    torch.testing.assert_close(terms[ELBO_KEY], terms[RECON] - terms["z"], rtol=0, atol=0)

    pyro.set_rng_seed(0)
    gaps = site_gaps(model, guide, x, local_steps=200, local_lr=0.05, eval_k=50, batch_size=4)
    parts = gaps.termwise()
    torch.testing.assert_close(sum(p.per_datapoint for p in parts.values()), gaps.total.per_datapoint)
    assert gaps.total.per_datapoint.shape == (6,) and gaps.total.mean > 1.0  # an untrained encoder
    out = gaps.to_dict()
    assert set(out["termwise"]) == {RECON, "z"} and out["total"]["mean"] == gaps.total.mean


def test_exact_guide_leaves_no_gap_and_terms_match_closed_forms(float64):
    model = pca_model(30.0)
    x = data(model, n=6)
    exact = build_guide("exact", model)
    pyro.set_rng_seed(1)
    table = amortization_gap(
        model, exact, x, is_k=500, ais_intermediate=0, flow=False, per_site=True, family="ffg", **FIT
    )
    gaps = table.per_site
    assert gaps.amortized[ELBO_KEY].stderr < 1e-9  # every weight of the exact posterior is p(x)
    assert within(gaps.amortized[ELBO_KEY], model.log_marginal(x).mean().item())
    # q* cannot beat the posterior; it stays within the optimizer's tolerance of it.
    assert -CONVERGED <= gaps.total.mean <= 4 * gaps.total.stderr
    assert within(gaps.alone_gaps()["z"], 0.0, CONVERGED) and within(gaps.interaction(), 0.0, CONVERGED)
    assert "per_site" in table.to_dict() and "KL z" in table.to_markdown()

    # The terms of a corrected full-covariance q are its closed-form reconstruction and KL.
    q = LocalCorrection(model, exact, n_data=6)
    with torch.no_grad():
        q.loc.normal_(0, 0.3)
        q.log_scale.normal_(0, 0.3)
    post = model.posterior(x)["z"]
    d = q.log_scale.exp()
    loc, cov = post.loc + q.loc, d[:, :, None] * post.covariance_matrix * d[:, None, :]
    kl = torch.distributions.kl_divergence(
        dist.MultivariateNormal(loc, cov), dist.MultivariateNormal(torch.zeros(2), torch.eye(2))
    )
    W, s2 = model.W, model.noise**2
    recon = dist.Normal(loc @ W.T + model.b, model.noise).log_prob(x).sum(-1) - torch.einsum(
        "ij,njk,ik->n", W, cov, W
    ) / (2 * s2)
    terms = site_terms(model, q, x, k=4000)
    for key, truth in ((RECON, recon), ("z", kl)):
        e = terms[key]
        assert ((e.per_datapoint - truth.detach()).abs() <= 4 * e.mc_stderr).all(), key


def test_gap_sits_in_the_one_wrong_layer(float64):
    model = TwoLayerGaussian(x_shape=(4,), z_dim=2, noise_scale=0.5, seed=3)
    x = data(model, n=6)
    shift = torch.tensor([0.8, -0.5])
    guide = WrongTop(model, shift)
    top = model.top_posterior(x)
    kl_top = (0.5 * shift @ top.precision_matrix @ shift).mean().item()  # KL(q(z2) || p(z2 | x))
    pyro.set_rng_seed(2)
    gaps = site_gaps(model, guide, x, local_lr=0.05, local_steps=2000, eval_k=2000)
    assert gaps.sites == ["z1", "z2"]
    assert within(gaps.amortized[ELBO_KEY], model.log_marginal(x).mean().item() - kl_top)
    assert within(gaps.total, kl_top, CONVERGED), (gaps.total.mean, kl_top)
    alone = gaps.alone_gaps()
    assert within(alone["z2"], kl_top, CONVERGED), (alone["z2"].mean, kl_top)
    assert within(alone["z1"], 0.0, CONVERGED), alone["z1"].mean  # its conditional is already exact
    assert within(gaps.interaction(), 0.0, 2 * CONVERGED)
    parts = gaps.termwise()
    torch.testing.assert_close(sum(p.per_datapoint for p in parts.values()), gaps.total.per_datapoint)


def test_bad_inputs(float64):
    model = pca_model(30.0)
    x = data(model, n=2)
    flow = LocalFlow(model, n_data=2)
    flow.fit_local(x, steps=1)
    with pytest.raises(ConfigError, match="point masses"):
        site_gaps(model, flow, x, local_steps=1, eval_k=2)
    with pytest.raises(ConfigError, match=r"choose from \['z'\]"):
        LocalCorrection(model, AmortizedNormal(model), n_data=2, sites=("z9",))


def test_cli_per_site_table(tmp_path, capsys):
    run_train(tmp_path / "run")
    argv = ["gap", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--n", "3", "--is-k", "10"]
    argv += ["--ais-intermediate", "0", "--local-steps", "3", "--eval-k", "5", "--per-site", "--no-progress"]
    assert main([*argv, "--json", str(tmp_path / "gap.json")]) == 0
    assert "Amortization gap per latent site" in capsys.readouterr().out
    per_site = json.loads((tmp_path / "gap.json").read_text())["per_site"]
    parts = sum(p["mean"] for p in per_site["termwise"].values())
    assert abs(parts - per_site["total"]["mean"]) < 1e-4 and set(per_site["alone"]) == set(per_site["sites"])
