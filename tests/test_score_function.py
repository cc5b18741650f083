"""Score-function gradients and baselines against hand-derived gradients on conjugate models.

Every datapoint of the toy models below owns its parameters, so one backward pass over a batch of B
identical datapoints yields B independent draws of the per-datapoint gradient estimator (the
gradient of the batch-mean loss, times B): means and variances come from one vectorized call.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from vaezoo import ELBO, AmortizedNormal, ConfigError, LinearGaussian, build_objective
from vaezoo.inference import IWAE, NonReparam, Reparam, ScoreFunction, run_pair
from vaezoo.inference.baselines import vimco_signals

SIGMA = 0.5


pytestmark = pytest.mark.usefixtures("float64")  # every test here runs in float64


class NormalNormal(PyroModule):
    """z ~ N(mu0, 1);  x ~ N(z, SIGMA^2);  one mu0 per datapoint."""

    max_plate_nesting = 1

    def __init__(self, batch: int, mu0: float = 0.0):
        super().__init__()
        self.mu0 = nn.Parameter(torch.full((batch,), mu0))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.mu0, 1.0))
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), SIGMA).to_event(1), obs=x)


class NormalGuide(PyroModule):
    """q(z) = N(m, s^2), one (m, log s) per datapoint."""

    def __init__(self, batch: int, m: float = 0.0, s: float = 1.0):
        super().__init__()
        self.m = nn.Parameter(torch.full((batch,), m))
        self.log_s = nn.Parameter(torch.full((batch,), math.log(s)))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.m, self.log_s.exp()))


def exact_elbo_gradient(x, mu0, m, s):
    """d ELBO / d(mu0, m, log s) of one datapoint, derived by hand.

    ELBO = -((x - m)^2 + s^2) / (2 SIGMA^2) - ((m - mu0)^2 + s^2) / 2 + log s + const.
    """
    return {
        "mu0": m - mu0,
        "m": (x - m) / SIGMA**2 - (m - mu0),
        "log_s": 1 - s**2 * (1 / SIGMA**2 + 1),
    }


def setup(batch, x=2.0, mu0=0.0, m=0.0, s=1.0):
    model, guide = NormalNormal(batch, mu0), NormalGuide(batch, m, s)
    xs = torch.as_tensor(x).expand(batch).reshape(batch, 1).clone()
    return model, guide, xs


def draws(objective, model, guide, x):
    """Per-datapoint gradient draws of the objective: dict name -> (B,) tensor."""
    loss = objective.differentiable_loss(model, guide, x)
    params = {"mu0": model.mu0, "m": guide.m, "log_s": guide.log_s}
    grads = torch.autograd.grad(-loss, list(params.values()))
    return {name: g * x.shape[0] for name, g in zip(params, grads, strict=True)}


def assert_unbiased(samples, exact, who):
    for name, g in samples.items():
        mean, se = g.mean().item(), g.std().item() / math.sqrt(len(g))
        target = exact[name] if not torch.is_tensor(exact[name]) else exact[name].mean().item()
        # + 1e-9: some gradients (the model's, with an analytic KL) are exact, with zero spread.
        assert abs(mean - target) <= 4 * se + 1e-9, (who, name, mean, target, se)


def assert_same_mean(a, b, who):
    for name in a:
        se = math.sqrt(a[name].var().item() / len(a[name]) + b[name].var().item() / len(b[name]))
        diff = a[name].mean().item() - b[name].mean().item()
        assert abs(diff) <= 4 * se, (who, name, diff, se)


def log_variance_ratio(a, b):
    """log(Var a / Var b) and its standard error, from the 4th moments (delta method)."""

    def log_var_and_se2(g):
        c = g - g.mean()
        var, m4 = c.pow(2).mean(), c.pow(4).mean()
        return var.log().item(), ((m4 / var**2 - 1) / len(g)).item()

    (la, sa), (lb, sb) = log_var_and_se2(a), log_var_and_se2(b)
    return la - lb, math.sqrt(sa + sb)


def assert_less_variance(better, worse, who, names=("m", "log_s")):
    for name in names:
        ratio, se = log_variance_ratio(better[name], worse[name])
        assert ratio + 4 * se < 0, (who, name, math.exp(ratio), se)


def warm_up(objective, model, guide, x, steps):
    """Run the estimator's own training (running average, NVIL network) with model and guide fixed."""
    params = list(objective.parameters())
    opt = torch.optim.Adam(params, lr=0.02) if params else None
    for _ in range(steps):
        loss = objective.differentiable_loss(model, guide, x)
        if opt is not None:
            opt.zero_grad()
            torch.autograd.backward(loss, inputs=params)
            opt.step()


B = 20000


@pytest.mark.parametrize("analytic_kl", [True, False])
@pytest.mark.parametrize("baseline", ["none", "avg", "nvil"])
def test_elbo_score_function_gradient_is_unbiased(baseline, analytic_kl):
    model, guide, x = setup(B, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    objective = ScoreFunction(ELBO(analytic_kl=analytic_kl), baseline=baseline, baseline_hidden=(8,))
    warm_up(objective, model, guide, x, steps=20)
    exact = exact_elbo_gradient(2.0, 0.3, -0.5, 0.8)
    assert_unbiased(draws(objective, model, guide, x), exact, baseline)


def test_pathwise_elbo_gradient_is_unbiased_and_the_messengers_switch_estimators():
    model, guide, x = setup(B, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    exact = exact_elbo_gradient(2.0, 0.3, -0.5, 0.8)
    with Reparam():
        assert_unbiased(draws(ELBO(), model, guide, x), exact, "pathwise")
    model, guide, x = setup(3)
    with NonReparam() as sampling:
        z = run_pair(model, guide, x, 2).guide_sites["z"]["value"]
    assert not z.requires_grad and len(sampling.sampled) == 1
    with Reparam():
        assert run_pair(model, guide, x, 2).guide_sites["z"]["value"].requires_grad


def test_baselines_reduce_variance():
    model, guide, x = setup(B, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    results = {}
    for baseline in ("none", "avg", "nvil"):
        objective = ScoreFunction(ELBO(analytic_kl=False), baseline=baseline, baseline_hidden=(8,))
        warm_up(objective, model, guide, x, steps=20)
        results[baseline] = draws(objective, model, guide, x)
    assert_less_variance(results["avg"], results["none"], "avg vs none")
    assert_less_variance(results["nvil"], results["none"], "nvil vs none")


def test_nvil_baseline_learns_the_input_dependence():
    # Four distinct inputs: a constant (avg) baseline cannot follow their different signals, NVIL can.
    values = torch.tensor([-2.0, 0.0, 2.0, 4.0]).repeat_interleave(B // 4)
    model, guide, x = setup(B, x=values, mu0=0.0, m=0.0, s=1.0)
    small = setup(400, x=values[:: B // 400], mu0=0.0, m=0.0, s=1.0)
    results = {}
    for baseline in ("avg", "nvil"):
        objective = ScoreFunction(ELBO(analytic_kl=False), baseline=baseline, baseline_hidden=(16,))
        warm_up(objective, *small, steps=300)
        results[baseline] = draws(objective, model, guide, x)
    exact = exact_elbo_gradient(values, 0.0, 0.0, 1.0)
    for name, g in results["nvil"].items():
        for v in values.unique():
            group = values == v
            resid = g[group] - torch.as_tensor(exact[name]).expand(B)[group]
            assert abs(resid.mean()) <= 4 * resid.std() / math.sqrt(group.sum()), (name, v)
    # Only for m: the log s gradient's variance here is dominated by the z-dependent part of the signal,
    # which no baseline (a function of x) can remove.
    assert_less_variance(results["nvil"], results["avg"], "nvil vs avg", names=("m",))


def test_iwae_score_function_and_vimco_match_the_pathwise_iwae_gradient():
    k, n = 5, B // 2
    model, guide, x = setup(n, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    pathwise = draws(IWAE(k=k), model, guide, x)
    results = {}
    for baseline in ("none", "avg", "vimco"):
        objective = ScoreFunction(IWAE(k=k), baseline=baseline)
        warm_up(objective, model, guide, x, steps=20)
        results[baseline] = draws(objective, model, guide, x)
        assert_same_mean(results[baseline], pathwise, baseline)
    assert_less_variance(results["vimco"], results["none"], "vimco vs none")


def test_score_function_gradient_is_unbiased_at_partial_latent_weight():
    # The score multiplies the unscaled log q: the latent weight lives in the signal only.
    model, guide, x = setup(B, x=2.0, mu0=0.3, m=-0.5, s=0.8)
    grads = {}
    for name, objective in (
        ("pathwise", ELBO(analytic_kl=False)),
        ("score", ScoreFunction(ELBO(analytic_kl=False), baseline="none")),
    ):
        loss = -objective.per_datapoint(model, guide, x, latent_weight=0.4).mean()
        g = torch.autograd.grad(-loss, [model.mu0, guide.m, guide.log_s])
        grads[name] = {p: gi * B for p, gi in zip(("mu0", "m", "log_s"), g, strict=True)}
    assert_same_mean(grads["score"], grads["pathwise"], "latent weight 0.4")


def test_vimco_signals_by_hand():
    log_w = torch.tensor([[0.0], [1.0], [3.0]])
    w = log_w.exp().squeeze(1)
    bound = math.log(w.mean())
    for j in range(3):
        others = [i for i in range(3) if i != j]
        geo = math.exp(log_w[others].mean().item())
        loo = math.log((w[others].sum().item() + geo) / 3)
        assert vimco_signals(log_w)[j, 0].item() == pytest.approx(bound - loo, rel=1e-12)


class BernoulliLatent(PyroModule):
    """z ~ Bernoulli(0.3);  x ~ N(2 z - 1, SIGMA^2): a discrete latent, no pathwise gradient."""

    max_plate_nesting = 1

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.3)))
            pyro.sample("x", dist.Normal((2 * z - 1).unsqueeze(-1), SIGMA).to_event(1), obs=x)


class BernoulliGuide(PyroModule):
    def __init__(self, batch: int, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.full((batch,), logit))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=self.logit))


@pytest.mark.parametrize("baseline", ["none", "avg"])
def test_discrete_latent_gradient_matches_exact_enumeration(baseline):
    n, x0 = B // 2, 0.4
    model, guide = BernoulliLatent(), BernoulliGuide(n, logit=-0.5)
    x = torch.full((n, 1), x0)
    # ELBO = sum_z q(z) [log p(x, z) - log q(z)], differentiated by autograd through the enumeration.
    logit = torch.tensor(-0.5, requires_grad=True)
    q = torch.sigmoid(logit)
    elbo = 0.0
    for z, qz, pz in ((1.0, q, 0.3), (0.0, 1 - q, 0.7)):
        log_lik = dist.Normal(2 * z - 1, SIGMA).log_prob(torch.tensor(x0))
        elbo = elbo + qz * (math.log(pz) + log_lik - qz.log())
    (exact,) = torch.autograd.grad(elbo, logit)
    objective = ScoreFunction(ELBO(analytic_kl=False), baseline=baseline)
    warm_up(objective, model, guide, x, steps=20)
    (g,) = torch.autograd.grad(-objective.differentiable_loss(model, guide, x), [guide.logit])
    assert_unbiased({"logit": g * n}, {"logit": exact.item()}, baseline)
    with pytest.raises(ConfigError, match="dreg needs reparameterizable"):
        IWAE(k=3, dreg=True).differentiable_loss(model, guide, x)


def test_value_is_the_bound_and_construction_is_checked():
    model = LinearGaussian(x_shape=(4,))
    guide = AmortizedNormal(model, hidden=(8,))
    x = torch.randn(6, 4)
    for inner in (ELBO(num_particles=2), IWAE(k=3)):
        torch.manual_seed(0)
        wrapped = ScoreFunction(inner, baseline="avg").differentiable_loss(model, guide, x)
        torch.manual_seed(0)
        torch.testing.assert_close(wrapped, inner.differentiable_loss(model, guide, x), rtol=0, atol=1e-12)
    built = build_objective("score_function", bound="iwae", num_particles=4, baseline="vimco")
    assert isinstance(built.objective, IWAE) and built.objective.config.k == 4
    assert ScoreFunction(IWAE(k=4), baseline="vimco").config == built.config
    with pytest.raises(ConfigError, match="vimco"):
        ScoreFunction(ELBO(), baseline="vimco")
    with pytest.raises(ConfigError, match="DReG"):
        ScoreFunction(IWAE(dreg=True))


def test_fit_trains_checkpoints_and_restores_the_baseline(tmp_path):
    from vaezoo import checkpoint, fit

    model = LinearGaussian(x_shape=(4,))
    guide = AmortizedNormal(model, hidden=(8,))
    data = torch.randn(64, 4)
    objective = ScoreFunction(ELBO(), baseline="nvil", baseline_hidden=(8,))
    fit(model, guide, data, objective, epochs=2, batch_size=16, lr=1e-2, out=tmp_path, progress=False)
    state = objective.state_dict()
    assert state["average.steps"].item() == 8, "one running-average update per training step"
    assert state["net.2.0.weight"].abs().sum() > 0, "the optimizer must have trained the NVIL network"
    _, _, restored, _ = checkpoint.restore(tmp_path / "checkpoint.pt")
    assert restored.config == objective.config
    for name, value in restored.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_an_objective_without_a_score_function_form_is_refused():
    with pytest.raises(ConfigError, match="no score-function form"):
        ScoreFunction(ScoreFunction(ELBO()))
