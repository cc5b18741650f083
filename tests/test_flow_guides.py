"""The planar, IAF and Sylvester guides against truth: change of variables by brute force, exact
invertibility and autoregressive structure, scores checked by numerical inversion, and the ELBO gap
on probabilistic PCA against the mean-field optimum in closed form."""

import math

import pytest
import torch
from pyro import poutine
from torch.autograd.functional import jacobian

from vaezoo import ConfigError
from vaezoo.guides.iaf import iaf_step
from vaezoo.guides.planar import planar_step, planar_u_hat
from vaezoo.inference import ELBO, IWAE, ScoreFunction, log_likelihood
from vaezoo.inference.iwae import ReplayValues
from vaezoo.inference.traces import run_pair
from vaezoo.nets import MADE, frozen
from vaezoo.registry import build_guide, build_model

# Random parameters with this spread keep every flow well conditioned (an IAF whose gates all sit near
# 0 contracts by e^-60, where no finite-precision Jacobian determinant is trustworthy).
SPREAD = {"planar": 0.7, "iaf": 0.25, "sylvester": 0.7}
FLOWS = {
    "planar": {"steps": 3},
    "iaf": {"steps": 3, "made_hidden": (16, 16), "context": 4},
    "sylvester": {"steps": 2},
    "sylvester-rank2": {"steps": 2, "rank": 2},
}
MODELS = {  # D = 5 latent coordinates each; the HVAE's are two sites (3 + 2)
    "vae": {"x_shape": (1, 4, 4), "z_dim": 5, "hidden": (8,)},
    "hvae": {"x_shape": (1, 4, 4), "z_dims": (3, 2), "hidden": (8,)},
}


def flow(name: str, model, **extra):
    return build_guide(name.split("-")[0], model, hidden=(12,), **FLOWS[name], **extra)


def randomize(module, scale: float = 0.7) -> None:
    """Every parameter drawn afresh, so no step of the flow is near the identity."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)


def setup(flow_name, model_name, seed=0):
    torch.manual_seed(seed)
    model = build_model(model_name, MODELS[model_name])
    guide = flow(flow_name, model)
    randomize(guide, SPREAD[flow_name.split("-")[0]])
    x = torch.bernoulli(torch.full((3, *model.x_shape), 0.5))
    return model, guide, x


def brute_log_q(guide, x, eps):
    """log N(z0; mu, sigma) - log |det dz/dz0| with the whole flow's Jacobian taken by autograd."""
    loc, scale, cond = guide.encode(x)
    out = torch.empty(eps.shape[:2])
    for j in range(eps.shape[0]):
        for n in range(eps.shape[1]):
            z0 = loc[n] + scale[n] * eps[j, n]
            jac = jacobian(lambda v, c=cond[n]: guide.transform(v, c)[0], z0)
            base = torch.distributions.Normal(loc[n], scale[n]).log_prob(z0).sum()
            out[j, n] = base - torch.linalg.slogdet(jac)[1]
    return out


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("flow_name", sorted(FLOWS))
def test_log_q_is_the_change_of_variables_density(flow_name, model_name, float64):
    model, guide, x = setup(flow_name, model_name)
    torch.manual_seed(1)
    draw = guide.draw(x, k=2)
    torch.testing.assert_close(draw.log_q, brute_log_q(guide, x, draw.eps), rtol=0, atol=1e-8)
    # The sites a traced run emits carry the same density (joint on the first site, 0 on the others).
    torch.manual_seed(1)
    pair = run_pair(model, guide, x, 2)
    torch.testing.assert_close(sum(pair.log_q(n) for n in pair.latent), draw.log_q, rtol=0, atol=1e-12)
    values = {n: pair.guide_sites[n]["value"] for n in pair.latent}
    torch.testing.assert_close(guide.layout.join(values, 2, 3), draw.z, rtol=0, atol=0)


def test_planar_steps_are_invertible_for_every_parameter_value(float64):
    torch.manual_seed(0)
    n, d = 4000, 3
    spread = 10 ** torch.empty(n, 1).uniform_(-3, 3)  # magnitudes from 1e-3 to 1e3
    u, w = torch.randn(n, d) * spread, torch.randn(n, d) * spread.flip(0)
    b = torch.randn(n, 1) * 10
    u_hat, wu_hat = planar_u_hat(u, w)
    assert (wu_hat >= -1).all()
    # The closed form the step uses is the dot product, up to rounding in the size of the terms.
    scale = w.norm(dim=-1) * u_hat.norm(dim=-1)
    assert ((w * u_hat).sum(-1) - wu_hat.squeeze(-1)).abs().le(1e-12 * scale + 1e-12).all()
    wu_hat = wu_hat.squeeze(-1)
    z = torch.randn(n, d) * 3
    dets = torch.stack([torch.linalg.det(jacobian(lambda v, i=i: planar_step(v, u[i], w[i], b[i])[0], z[i]))
                        for i in range(0, n, 20)])
    # det = 1 + u_hat . psi, each of its terms up to |u_hat| |w|: no sign change beyond their rounding.
    assert (dets >= -1e-12 * (1 + scale[::20])).all(), "a planar step's Jacobian determinant changed sign"
    _, log_det = planar_step(z, u, w, b)
    assert (log_det.exp() >= 0).all() and not log_det.isnan().any()
    torch.testing.assert_close(log_det[::20].exp(), dets, rtol=1e-6, atol=1e-9 * (1 + scale[::20].max()))
    # Along w the step is alpha -> alpha + (w . u_hat) tanh(alpha + b) (alpha = w . z), non-decreasing:
    # injective along w and the identity across it, so invertible.
    alpha = torch.linspace(-50, 50, 2001)
    along = alpha + wu_hat[:, None] * torch.tanh(alpha + b)
    assert (along.diff(dim=-1) >= -1e-9).all()


def test_iaf_steps_are_autoregressive_in_alternating_orders(float64):
    torch.manual_seed(0)
    model = build_model("vae", MODELS["vae"])
    guide = flow("iaf", model)
    randomize(guide)
    d = guide.dim
    orders = [made.order.tolist() for made in guide.mades]
    assert orders == [list(range(d)), list(range(d))[::-1], list(range(d))]
    h = torch.randn(guide.config.context)
    for made in guide.mades:
        order = made.order
        before = order[None, :] < order[:, None]  # before[i, j]: j comes before i
        for _ in range(3):
            z = torch.randn(d)
            jm, js = (jacobian(lambda v, o=o, made=made: made(v, h)[o], z) for o in (0, 1))
            assert (jm[~before] == 0).all() and (js[~before] == 0).all()
            assert (jm[before] != 0).any()
            step = jacobian(lambda v, made=made: iaf_step(made, v, h)[0], z)
            assert (step[~(before | torch.eye(d, dtype=torch.bool))] == 0).all()
            torch.testing.assert_close(step.diagonal(), torch.sigmoid(made(z, h)[1]))


def test_made_first_output_sees_only_the_context():
    made = MADE(1, 3, (4,))
    z, h = torch.randn(1), torch.randn(3)
    assert (jacobian(lambda v: made(v, h)[0], z) == 0).all()
    assert (jacobian(lambda c: made(z, c)[0], h) != 0).any()


def test_sylvester_rank_is_checked_against_the_latent_size():
    model = build_model("vae", MODELS["vae"])
    assert build_guide("sylvester", model, rank=5).rank == 5
    assert build_guide("sylvester", model).rank == 5
    with pytest.raises(ConfigError, match=r"rank M = 6 exceeds the latent size D = 5.*at most 5"):
        build_guide("sylvester", model, rank=6)


@pytest.mark.parametrize("name", ["planar", "iaf", "sylvester"])
def test_zero_steps_are_refused_naming_the_field(name):
    model = build_model("vae", MODELS["vae"])
    with pytest.raises(ConfigError, match=r"'steps' = 0 is not allowed: must be an integer >= 1"):
        build_guide(name, model, steps=0)


@pytest.mark.parametrize("flow_name", ["planar", "iaf", "sylvester"])
def test_scoring_a_sample_the_guide_did_not_draw_is_an_error(flow_name):
    model, guide, x = setup(flow_name, "vae")
    other = poutine.trace(build_guide("amortized", model)).get_trace(x)
    with pytest.raises(ConfigError, match="replayed on latent values it did not draw"):
        poutine.trace(poutine.replay(guide, trace=other)).get_trace(x)
    own = poutine.trace(guide).get_trace(x).nodes["z"]
    with pytest.raises(ConfigError, match="did not draw.*can score only its own samples"):
        own["fn"].log_prob(own["value"] + 0.1)
    # Its own last draw replayed after a parameter change: the density is no longer known.
    with torch.no_grad():
        guide.head.bias.add_(0.5)
    with pytest.raises(ConfigError, match="parameters or x changed since"):
        poutine.trace(poutine.replay(guide, trace=poutine.trace(guide).get_trace(x))).get_trace(x[[1, 0, 2]])


def newton_log_q(guide, x, z, eps):
    """log q(z | x) by inverting the flow numerically (Newton from ``eps``), not from the guide's scores."""
    eps = eps.clone()

    def flow_of(n):
        return lambda e: guide.push(x[n : n + 1], e[None, None])[0][0, 0]

    for _ in range(60):
        jac = torch.stack([jacobian(flow_of(n), eps[0, n]) for n in range(x.shape[0])])[None]
        resid = guide.push(x, eps)[0] - z
        eps = eps - torch.linalg.solve(jac, resid.unsqueeze(-1)).squeeze(-1)
    assert (guide.push(x, eps)[0] - z).abs().max() < 1e-11
    return guide.push(x, eps)[1]


@pytest.mark.parametrize("flow_name", ["planar", "iaf", "sylvester"])
def test_scores_at_fixed_z_and_fixed_parameters_match_numerical_inversion(flow_name, float64):
    """What score-function gradients (d log q / d phi at fixed z) and DReG (d log q / dz at fixed phi)
    read from a site are the derivatives of the true density, found here by inverting the flow."""
    _, guide, x = setup(flow_name, "vae")
    trace = poutine.trace(guide).get_trace(x)
    site = trace.nodes["z"]
    z = site["value"].detach()[None]
    eps = site["fn"].draw.eps
    # d/dz at fixed parameters, at a detached leaf replayed into the guide (DReG's second pass).
    leaf = z[0].clone().requires_grad_(True)
    with ReplayValues({"z": leaf}):
        replayed = poutine.trace(guide).get_trace(x).nodes["z"]
    assert replayed["value"] is leaf
    (g,) = torch.autograd.grad(replayed["fn"].log_prob(leaf).sum(), leaf)
    v, h = torch.randn_like(z), 1e-5
    fd = (newton_log_q(guide, x, z + h * v, eps) - newton_log_q(guide, x, z - h * v, eps)) / (2 * h)
    torch.testing.assert_close((g * v[0]).sum(-1), fd[0], rtol=1e-6, atol=1e-7)
    # d/dphi at fixed z, through the detached sample (the score-function form).
    param = guide.head.bias
    (score,) = torch.autograd.grad(site["fn"].log_prob(site["fn"].sample()).sum(), param)
    direction = torch.randn_like(param)
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            param.add_(sign * h * direction)
            values.append(newton_log_q(guide, x, z, eps).sum())
            param.sub_(sign * h * direction)
    fd = (values[0] - values[1]) / (2 * h)
    torch.testing.assert_close((score * direction).sum(), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("flow_name", ["planar", "iaf", "sylvester"])
def test_estimators_run_unchanged_with_flow_guides(flow_name, model_name):
    model, guide, x = setup(flow_name, model_name)
    randomize(guide, 0.1)
    for objective in (ELBO(num_particles=2), IWAE(k=3), IWAE(k=3, dreg=True), ScoreFunction(IWAE(k=3))):
        torch.manual_seed(2)
        loss = objective.differentiable_loss(model, guide, x)
        torch.manual_seed(2)
        assert objective.loss(model, guide, x) == pytest.approx(loss.item(), rel=1e-6)
        guide.zero_grad()
        loss.backward()
        grads = [p.grad for p in guide.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    estimate = log_likelihood(model, guide, x, k=20)
    assert torch.isfinite(estimate.per_datapoint).all()


def test_dreg_gradient_of_a_flow_is_the_iwae_gradient_in_expectation_at_k1(float64):
    # At k = 1 the DReG surrogate's guide gradient is the ELBO's pathwise gradient without the
    # score term, whose expectation is zero: on one fixed draw they differ exactly by that term,
    # d/dphi log q_phi(z) at fixed z, which the same draw gives through the detached sample.
    model, guide, x = setup("iaf", "vae")
    randomize(guide, 0.2)
    params = list(guide.parameters())

    def grads(objective):
        torch.manual_seed(3)
        guide.zero_grad()
        objective.differentiable_loss(model, guide, x).backward()
        return torch.cat([p.grad.flatten() for p in params])

    dreg, plain = grads(IWAE(k=1, dreg=True)), grads(IWAE(k=1))
    torch.manual_seed(3)
    pair = run_pair(model, guide, x, 1)
    fn = pair.guide_sites["z"]["fn"]
    score = torch.autograd.grad(fn.log_prob(fn.sample()).sum(), params, allow_unused=True)
    score = torch.cat(
        [(s if s is not None else torch.zeros_like(p)).flatten() for s, p in zip(score, params, strict=True)]
    )
    # loss = -mean_n log w_n; the pathwise gradient of log w has the extra term -d log q / dphi.
    torch.testing.assert_close(dreg - plain, -score / x.shape[0], rtol=1e-6, atol=1e-9)


PPCA_BUDGET = {  # (guide config, Adam steps, learning rate): seeded, a few seconds each
    "planar": ({"steps": 8}, 600, 1e-2),
    "iaf": ({"steps": 2, "made_hidden": (32,), "context": 8}, 300, 2e-2),
    "sylvester": ({"steps": 2}, 300, 2e-2),
}


@pytest.mark.parametrize("flow_name", sorted(PPCA_BUDGET))
def test_flow_guide_closes_the_mean_field_gap_on_probabilistic_pca(flow_name):
    """On pPCA with a posterior correlation of -0.93 every mean-field q, amortized or not, has
    log p(x) - ELBO >= KL(q*_MF || p(z|x)) = (sum_i log Lambda_ii - log det Lambda) / 2 (Lambda the
    posterior precision, the same for every x). A trained flow guide must close at least half of
    that gap on the training points, by more than 4 Monte Carlo standard errors; importance sampling
    with it as proposal must recover the exact log p(x)."""
    torch.manual_seed(0)
    model = build_model("linear_gaussian", x_shape=(4,), z_dim=2)
    with torch.no_grad():
        model.W.copy_(torch.tensor([[1.0, 0.9], [1.0, 1.1], [0.8, 0.9], [1.2, 1.0]]))
        x = model.x_dist(torch.randn(32, 2)).sample()
    precision = torch.eye(2) + model.W.T @ model.W / model.noise**2
    mean_field_gap = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()
    assert mean_field_gap > 1.0  # the posterior is strongly correlated: the test has something to show
    config, steps, lr = PPCA_BUDGET[flow_name]
    guide = build_guide(flow_name, model, hidden=(50,), **config)
    optimizer = torch.optim.Adam(guide.parameters(), lr=lr)
    objective = ELBO(num_particles=4)
    with frozen(model):
        for _ in range(steps):
            loss = -objective.per_datapoint(model, guide, x).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        gaps = model.log_marginal(x) - run_pair(model, guide, x, 500).log_weight()  # (particles, data)
        gap, stderr = gaps.mean().item(), (gaps.std() / math.sqrt(gaps.numel())).item()
        assert gap + 4 * stderr < 0.5 * mean_field_gap, (gap, stderr, mean_field_gap)
        estimate = log_likelihood(model, guide, x, k=2000)
        err = (estimate.per_datapoint - model.log_marginal(x)).abs()
        assert (err < 5 * estimate.mc_stderr + 1e-4).all(), (err.max(), estimate.mc_stderr.max())
