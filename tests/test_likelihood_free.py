"""Likelihood-free VI (Tran, Ranganath & Blei 2017) on a simulator that is secretly Gaussian; its ratio
network trained in the adversary step only, resumed exactly, refused where it cannot train."""

import math

import pytest
import torch
from torch import nn

from vaezoo import CheckpointError, ConfigError, checkpoint, fit
from vaezoo.analysis import LFVIStudy, lfvi_study
from vaezoo.distributions import Simulator
from vaezoo.inference import ELBO, IWAE, LFVI, log_likelihood
from vaezoo.inference.fit import CHECKPOINT, mean_bound
from vaezoo.inference.training_step import check_adversary
from vaezoo.models.implicit import ImplicitGaussian
from vaezoo.parallel import World
from vaezoo.registry import build_guide, build_model, build_objective

D, d = 5, 2


def simulator(noise_scale=1.0):
    torch.manual_seed(0)
    model = build_model("implicit_gaussian", x_shape=(D,), z_dim=d, noise_scale=noise_scale)
    model.requires_grad_(False)
    return model


class ExactLogRatio(nn.Module):
    """log p(x, z) - log q(z | x), minus log p(x) when ``data_density``: the closed form of r."""

    def __init__(self, model, guide, data_density: bool):
        super().__init__()
        self.twin, self.data_density = model.gaussian_twin(), data_density
        self.__dict__["guide"] = guide  # not a submodule: the ratio has no parameters of its own

    def forward(self, f):
        x, z = f[..., :D], f[..., D:]
        r = self.twin.x_dist(z).log_prob(x) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        r = r - self.guide.site_dists(x)["z"].log_prob(z)
        if self.data_density:
            r = r - self.twin.log_marginal(x.reshape(-1, D)).reshape(x.shape[:-1])
        return r.unsqueeze(-1)


def test_the_simulator_draws_the_gaussian_marginal():
    model = simulator()
    twin = model.gaussian_twin()
    x = model.sample_x(20000)
    cov = twin.W @ twin.W.T + twin.noise**2 * torch.eye(D)
    se = (cov.diagonal() / len(x)).sqrt()  # standard error of each mean
    assert ((x.mean(0) - twin.b).abs() < 4 * se).all()
    # The sample covariance's standard error per entry is about sqrt((S_ii S_jj + S_ij^2) / n).
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / len(x)).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < 4 * se_cov).all()


def test_density_objectives_refuse_the_simulator_clearly():
    model = simulator()
    guide = model.default_guide()
    x = model.sample_x(4)
    for objective in (ELBO(), IWAE(k=3), build_objective("score_function")):
        with pytest.raises(ConfigError, match="no density.*'lfvi'"):
            objective.differentiable_loss(model, guide, x)
    with pytest.raises(ConfigError, match="no density"):
        log_likelihood(model, guide, x, k=4)
    assert not model.has_likelihood and not LFVI.needs_likelihood and ELBO.needs_likelihood
    with pytest.raises(ConfigError, match="no density"):
        model.x_dist(torch.zeros(3, d)).log_prob(x[:3])
    assert isinstance(model.x_dist(torch.zeros(3, d)), Simulator)


@pytest.mark.parametrize("particles", [1, 3])
def test_with_the_exact_ratio_lfvi_is_the_elbo(particles):
    model = simulator()
    guide = build_guide("affine_normal", model)
    with torch.no_grad():  # a guide away from the posterior, so the terms are not trivially equal
        guide.loc.weight.normal_()
        guide.raw_tril[0].normal_()
    guide.requires_grad_(True)
    x = model.sample_x(7)
    elbo = ELBO(num_particles=particles, analytic_kl=False)
    for data_density, shift in ((False, 0.0), (True, model.gaussian_twin().log_marginal(x))):
        lfvi = LFVI(num_particles=particles, ratio=ExactLogRatio(model, guide, data_density))
        torch.manual_seed(3)
        want = elbo.per_datapoint(model.gaussian_twin(), guide, x) - shift
        torch.manual_seed(3)
        got = lfvi.per_datapoint(model, guide, x)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)  # float32 rounding only
    torch.manual_seed(4)
    params = list(guide.parameters())
    grads_elbo = torch.autograd.grad(elbo.differentiable_loss(model.gaussian_twin(), guide, x), params)
    lfvi = LFVI(num_particles=particles, ratio=ExactLogRatio(model, guide, False))
    torch.manual_seed(4)
    grads_lfvi = torch.autograd.grad(lfvi.differentiable_loss(model, guide, x), params)
    for a, b in zip(grads_lfvi, grads_elbo, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def guide_near_the_posterior(model):
    """The exact posterior's mean shifted by 0.3 and its scale times 1.5: a moderate mismatch."""
    twin, guide = model.gaussian_twin(), build_guide("affine_normal", model)
    with torch.no_grad():
        S = torch.linalg.inv(torch.eye(d) + twin.W.T @ twin.W / twin.noise**2)
        A = S @ twin.W.T / twin.noise**2
        guide.loc.weight.copy_(A)
        guide.loc.bias.copy_(-A @ twin.b + 0.3)
        L = torch.linalg.cholesky(S) * 1.5
        guide.raw_tril[0].copy_(L.tril(-1) + torch.diag(torch.log(torch.expm1(L.diagonal()))))
    return guide


def test_the_trained_ratio_approaches_the_true_log_ratio():
    # Data are fresh simulator draws, so q(x) = p(x) and r* = log p(z | x) - log q(z | x).
    model = simulator()
    guide = guide_near_the_posterior(model)
    objective = LFVI(ratio_lr=1e-2)
    torch.manual_seed(1)
    losses = [objective.ratio_step(model, guide, model.sample_x(1024)).item() for _ in range(200)]
    exact = ExactLogRatio(model, guide, data_density=True)
    with torch.no_grad():
        held_out = model.sample_x(4000)
        q_draws = objective.guide_features(model, guide, held_out)[0]
        for features in (q_draws, objective.model_features(model, held_out)):
            truth = exact(features).squeeze(-1)
            rmse = (objective.log_ratio(features) - truth).pow(2).mean().sqrt()
            # r* spreads over about 1.7 nats (sd) on q's draws, 0.7 on p's; the fit is within 40% of it.
            assert rmse < 0.4 * truth.std(), (rmse, truth.std())
    # The classifier beats chance (log loss 2 log 2 for the two balanced halves).
    assert sum(losses[-20:]) / 20 < 2 * 0.693 - 0.1


def check_study(study, lfvi_kl, elbo_kl):
    r = lfvi_study(study)
    # the truth stays the truth: neither fit moved the simulator (nor its Gaussian twin, which shares it)
    fresh = ImplicitGaussian(x_shape=(study.x_dim,), z_dim=study.z_dim, noise_scale=study.noise_scale,
                             seed=study.seed)
    for (name, p), q in zip(r.model.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q), name
    e = r.errors
    assert e["lfvi"].kl < lfvi_kl and e["elbo"].kl < elbo_kl, r
    assert e["lfvi"].kl < 0.05 * e["prior"].kl
    assert e["lfvi"].mean_error < 0.2 * e["prior"].mean_error
    assert e["lfvi"].cov_error < 0.25 * e["prior"].cov_error
    return r


def test_lfvi_recovers_the_posterior_of_the_simulator():
    # Measured (seed 0): prior KL 4.96; LFVI 0.145 after 80 guide steps; ELBO (true likelihood) lower.
    check_study(LFVIStudy(n_train=1000, epochs=8, elbo_epochs=30, lr=1e-2, warmup_steps=100), 0.25, 0.1)


@pytest.mark.slow
def test_lfvi_recovers_the_posterior_of_the_simulator_longer():
    # The defaults, as experiments/likelihood_free.py runs them (docs/likelihood_free has the numbers).
    check_study(LFVIStudy(), 0.1, 0.05)


def ratio_state(objective):
    """r's weights and Adam moments (cloned), and the update counts."""
    return {k: v.clone() for k, v in objective.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_ratio_network_moves_only_in_adversary_step():
    model = simulator()
    guide = model.default_guide()
    objective = LFVI(ratio_steps=2)
    x = model.sample_x(8)
    record = objective.adversary_step(model, guide, x)
    assert set(record) == {"ratio_loss"} and math.isfinite(record["ratio_loss"])
    before = ratio_state(objective)
    assert int(before["updates"]) == 2 and int(before["warmup_done"]) == 0
    # Loss, bound and evaluation: the guide's gradient only, no update and no gradient left on r.
    torch.manual_seed(5)
    loss = objective.differentiable_loss(model, guide, x)
    loss.backward()
    torch.manual_seed(5)
    assert objective.loss(model, guide, x) == pytest.approx(loss.item(), rel=1e-6)
    objective.bound(model, guide, x)
    mean_bound(model, guide, objective, x)
    assert same(before, ratio_state(objective))
    assert all(p.grad is None for p in objective.ratio_parameters())
    assert all(p.grad is not None for p in guide.parameters())
    objective.adversary_step(model, guide, x)
    after = ratio_state(objective)
    assert int(after["updates"]) == 4
    assert not torch.equal(before["ratio.0.weight"], after["ratio.0.weight"])
    assert all(p.grad is None for p in objective.ratio_parameters())  # its own optimizer cleaned up


def test_the_warm_up_runs_once_and_is_remembered_by_the_state():
    model = simulator()
    guide = model.default_guide()
    x = model.sample_x(8)
    objective = LFVI(ratio_warmup=4, ratio_steps=2)
    objective.adversary_step(model, guide, x)
    state = ratio_state(objective)
    assert (int(state["warmup_done"]), int(state["updates"])) == (4, 6)
    assert all(int(v) == 6 for k, v in state.items() if k.endswith(".step"))  # Adam's own count
    objective.adversary_step(model, guide, x)
    assert int(objective.state_dict()["updates"]) == 8
    resumed = LFVI(ratio_warmup=4, ratio_steps=2)
    resumed.load_state_dict(state)
    resumed.adversary_step(model, guide, x)
    assert (int(resumed.state_dict()["warmup_done"]), int(resumed.state_dict()["updates"])) == (4, 8)


def test_state_round_trip():
    model = simulator()
    guide = model.default_guide()
    objective = LFVI()
    x = model.sample_x(16)
    objective.adversary_step(model, guide, x)
    state = objective.state_dict()
    assert any(k.startswith("optimizer.") for k in state)
    fresh = LFVI()
    fresh.load_state_dict(state)
    features = objective.guide_features(model, guide, x)
    torch.testing.assert_close(fresh.log_ratio(features), objective.log_ratio(features))
    assert fresh.state_dict().keys() == state.keys()
    torch.manual_seed(2)
    objective.ratio_step(model, guide, x)
    torch.manual_seed(2)
    fresh._names = objective._names
    fresh.ratio_step(model, guide, x)
    torch.testing.assert_close(fresh.log_ratio(features), objective.log_ratio(features))


FAST = {"ratio_hidden": (16,), "ratio_lr": 1e-2, "ratio_steps": 2, "ratio_warmup": 5}


def run(out, epochs, seed=0):
    model = simulator()
    data = model.sample_x(96)
    torch.manual_seed(seed)
    guide = build_guide("affine_normal", model)
    objective = LFVI(**FAST)
    history = fit(model, guide, data, objective, epochs=epochs, batch_size=32, lr=1e-2, out=out,
                  progress=False)
    return history, guide, objective


def test_an_interrupted_fit_resumes_bit_identically(tmp_path):
    straight, guide, objective = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)
    resumed, guide_b, objective_b = run(tmp_path / "b", 3, seed=99)
    assert resumed == [{**h, "seconds": r["seconds"]} for h, r in zip(straight, resumed, strict=True)]
    assert all("ratio_loss" in h for h in straight)
    for a, b in zip(guide.parameters(), guide_b.parameters(), strict=True):
        assert torch.equal(a, b)
    state, state_b = objective.state_dict(), objective_b.state_dict()
    assert same(state, state_b), "ratio weights, Adam moments and update counts"
    # The warm-up ran once (in the first of the resumed run's two calls to fit), then 2 updates per step.
    assert (int(state["warmup_done"]), int(state["updates"])) == (5, 5 + 2 * 3 * 3)


def test_a_checkpoint_without_the_ratio_state_is_refused(tmp_path):
    run(tmp_path, 1)
    path = tmp_path / CHECKPOINT
    payload = checkpoint.load(path)
    saved = payload["state"]["objective"]
    parts = (("optimizer.", "optimizer state"), ("ratio.", "weights"), ("updates", "update counts"))
    for drop, says in parts:
        payload["state"]["objective"] = {k: v for k, v in saved.items() if not k.startswith(drop)}
        checkpoint.save(path, payload)
        with pytest.raises(CheckpointError, match=f"lfvi state lacks .*{says}.*--no-resume"):
            run(tmp_path, 2)
    del payload["state"]["objective"]
    checkpoint.save(path, payload)
    with pytest.raises(CheckpointError, match=r"holds no state of objective 'lfvi'.*--no-resume"):
        run(tmp_path, 2)
    with pytest.raises(CheckpointError, match="ratio_hidden it was trained with"):
        LFVI(ratio_hidden=(8,)).load_state_dict(saved)


def test_compiled_and_multi_process_training_are_refused_with_the_alternative():
    model = simulator()
    guide = model.default_guide()
    with pytest.raises(ConfigError, match=r"'lfvi' trains a .*ratio network.*compile=None"):
        fit(model, guide, model.sample_x(8), LFVI(), epochs=1, compile="fx", progress=False)
    with pytest.raises(ConfigError, match=r"'lfvi'.*2 processes; train it in one process"):
        check_adversary(LFVI(), World(rank=0, size=2), None)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ConfigError, match="ratio_hidden"):
        build_objective("lfvi", ratio_hidden=(0,))
    with pytest.raises(ConfigError, match="ratio_lr"):
        build_objective("lfvi", ratio_lr=0.0)
    with pytest.raises(ConfigError, match="ratio_warmup"):
        build_objective("lfvi", ratio_warmup=-1)
    model = simulator()
    guide = model.default_guide()
    with pytest.raises(ConfigError, match="NaN"):
        LFVI().check_pair(model, guide, torch.full((2, D), float("nan")))
    with pytest.raises(ConfigError, match="one tensor"):
        LFVI().check_pair(model, guide, [model.sample_x(2)])
    with pytest.raises(ConfigError, match="first batch"):
        LFVI().model_features(model, model.sample_x(2))
    spins = build_model("block_spin", L=4, levels=2, channels=4, depth=1)
    with pytest.raises(ConfigError, match="lfvi"):
        LFVI().check_pair(spins, spins.default_guide(), spins.example_x(2))
