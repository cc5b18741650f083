"""beta-TCVAE against truth: the minibatch-weighted log q(z) against the enumerated average over all
batches of a small data set, the three-term split against a hand computation from log q(z_i | x_j)
tables, and the split against the ELBO's KL (exactly per sample, and the closed form in expectation)."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import Normal

from vaezoo import ConfigError
from vaezoo.inference import ELBO, BetaTCVAE, mws_log_density, run_pair
from vaezoo.inference.iwae import ReplayValues
from vaezoo.registry import build_guide, build_model, build_objective

VAE = {"x_shape": (1, 6, 6), "z_dim": 3, "hidden": (8,)}


def small_vae(guide: str = "amortized"):
    torch.manual_seed(0)
    model = build_model("vae", VAE)
    x = torch.bernoulli(torch.full_like(model.example_x(6), 0.4))
    return model, build_guide(guide, model), x


def test_minibatch_weighted_estimate_is_unbiased_over_every_batch():
    """For each z_i, averaging the estimate of q(z_i) over every batch that contains i (with the rest
    drawn uniformly without replacement) gives exactly q(z_i) = (1/N) sum_n q(z_i | x_n)."""
    torch.manual_seed(0)
    n, m = 6, 3
    table = torch.randn(n, n, dtype=torch.float64) * 2  # table[i, n] = log q(z_i | x_n)
    for i in range(n):
        estimates = []
        for others in itertools.combinations([j for j in range(n) if j != i], m - 1):
            batch = [i, *others]
            estimates.append(mws_log_density(table[batch][:, batch], n)[0].exp())
        truth = table[i].exp().mean()
        assert torch.stack(estimates).mean().item() == pytest.approx(truth.item(), rel=1e-12)


def test_minibatch_weighted_estimate_is_exact_when_the_batch_is_the_data_set():
    table = torch.randn(5, 5, dtype=torch.float64)
    assert torch.allclose(mws_log_density(table, 5), table.logsumexp(-1) - math.log(5), atol=1e-12)


def toy_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2, dtype=x.dtype), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)


LOC = torch.tensor([[0.3, -1.0], [1.2, 0.4], [-0.5, 0.9]], dtype=torch.float64)
SCALE = torch.tensor([[0.5, 1.3], [0.8, 0.6], [1.1, 0.7]], dtype=torch.float64)
Z = torch.tensor([[0.1, -0.7], [1.5, 0.2], [-0.2, 1.4]], dtype=torch.float64)


def toy_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(LOC, SCALE).to_event(1))


def test_split_matches_a_hand_computation_in_float64():
    n_data, m = 10, 3
    x = torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)
    objective = BetaTCVAE(dataset_size=n_data, beta=1.0)
    with ReplayValues({"z": Z.unsqueeze(0)}):
        t = objective.terms(toy_model, toy_guide, x)
    own, other = 1.0 / n_data, (n_data - 1) / (n_data * (m - 1))
    for i in range(m):
        joint, marginals = 0.0, [0.0, 0.0]
        for j in range(m):
            w = own if i == j else other
            dens = [math.exp(Normal(LOC[j, d], SCALE[j, d]).log_prob(Z[i, d]).item()) for d in range(2)]
            joint += w * dens[0] * dens[1]
            marginals = [marginals[d] + w * dens[d] for d in range(2)]
        log_qzx = sum(Normal(LOC[i, d], SCALE[i, d]).log_prob(Z[i, d]).item() for d in range(2))
        log_pz = sum(Normal(0.0, 1.0).log_prob(Z[i, d]).item() for d in range(2))
        log_prod = math.log(marginals[0]) + math.log(marginals[1])
        assert t["mi"][0, i].item() == pytest.approx(log_qzx - math.log(joint), abs=1e-12)
        assert t["tc"][0, i].item() == pytest.approx(math.log(joint) - log_prod, abs=1e-12)
        assert t["dim_kl"][0, i].item() == pytest.approx(log_prod - log_pz, abs=1e-12)
        assert t["recon"][0, i].item() == pytest.approx(
            Normal(Z[i].sum(), 1.0).log_prob(x[i, 0]).item(), abs=1e-12
        )


def test_unit_weights_give_the_monte_carlo_elbo_sample_by_sample():
    model, guide, x = small_vae()
    torch.manual_seed(3)
    tc = BetaTCVAE(dataset_size=100, beta=1.0, num_particles=4).per_datapoint(model, guide, x)
    torch.manual_seed(3)
    elbo = ELBO(analytic_kl=False, num_particles=4).per_datapoint(model, guide, x)
    assert torch.allclose(tc, elbo, atol=1e-5)


def test_the_three_terms_average_to_the_closed_form_kl():
    model, guide, x = small_vae()
    k = 4000
    torch.manual_seed(4)
    with torch.no_grad():
        t = BetaTCVAE(dataset_size=50, num_particles=k).terms(model, guide, x)
        total = t["mi"] + t["tc"] + t["dim_kl"]
        kl = run_pair(model, guide, x, 1).analytic_kl("z")[0]
    stderr = total.std(0) / math.sqrt(k)
    assert ((total.mean(0) - kl).abs() < 4 * stderr).all(), (total.mean(0), kl, stderr)
    # the log-sum-exp of the mixture is >= its own-datapoint term, so MI <= log N here
    assert (t["mi"] <= math.log(50) + 1e-5).all()


def test_bound_is_the_per_datapoint_elbo_whatever_beta():
    model, guide, x = small_vae()
    torch.manual_seed(5)
    bound = BetaTCVAE(dataset_size=100, beta=8.0, num_particles=3).bound(model, guide, x)
    torch.manual_seed(5)
    elbo = ELBO(analytic_kl=False, num_particles=3).per_datapoint(model, guide, x)
    assert torch.allclose(bound, elbo, atol=1e-5)


def test_beta_weights_the_total_correlation_only():
    model, guide, x = small_vae()
    values = {}
    for beta in (1.0, 5.0):
        torch.manual_seed(6)
        values[beta] = BetaTCVAE(dataset_size=100, beta=beta).per_datapoint(model, guide, x)
    torch.manual_seed(6)
    tc = BetaTCVAE(dataset_size=100).terms(model, guide, x)["tc"][0]
    assert torch.allclose(values[1.0] - values[5.0], 4.0 * tc, atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [({"beta": -1.0}, "beta"), ({"alpha": -0.5}, "alpha"), ({"dataset_size": 1}, "dataset_size")],
)
def test_bad_config_is_refused(overrides, words):
    with pytest.raises(ConfigError, match=words):
        build_objective("beta_tcvae", overrides)


def test_dataset_smaller_than_batch_is_refused():
    model, guide, x = small_vae()
    with pytest.raises(ConfigError, match="dataset_size"):
        BetaTCVAE(dataset_size=4).differentiable_loss(model, guide, x)
    with pytest.raises(ConfigError, match="batch size"):
        BetaTCVAE(dataset_size=4).differentiable_loss(model, guide, x[:1])


def test_flow_guides_and_hierarchies_are_refused_with_the_reason():
    model, guide, x = small_vae("planar")
    with pytest.raises(ConfigError, match="factorized guide"):
        BetaTCVAE().differentiable_loss(model, guide, x)
    hvae = build_model("hvae", {"x_shape": (1, 6, 6), "z_dims": (3, 2), "hidden": (8,)})
    with pytest.raises(ConfigError, match="single latent site"):
        BetaTCVAE().differentiable_loss(hvae, build_guide("amortized", hvae), x)


def test_check_pair_refuses_before_training_and_accepts_a_vae():
    model, guide, x = small_vae()
    BetaTCVAE(dataset_size=100).check_pair(model, guide, x)
    with pytest.raises(ConfigError, match="factorized guide"):
        BetaTCVAE().check_pair(*small_vae("iaf"))
    with pytest.raises(ConfigError, match="dataset_size"):
        BetaTCVAE(dataset_size=3).check_pair(model, guide, x)
