"""The VRNN against truth: a linear-Gaussian state-space model written as a VRNN-shaped Pyro program,
whose exact log-likelihood a Kalman filter gives; masks for variable lengths; bad sequence data."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from vaezoo import ConfigError, DataError, sequences
from vaezoo.guides import VRNNGuide
from vaezoo.inference import ELBO, IWAE, fit, log_likelihood
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.inference.traces import run_pair
from vaezoo.models import VRNN
from vaezoo.zoo_module import ZooModule

A = torch.tensor([[0.9, 0.2], [-0.3, 0.8]])
C = torch.tensor([[1.0, 0.5], [0.0, 1.0], [0.7, -0.4]])
Q = torch.tensor([0.5, 0.3])  # state noise variances (diagonal)
R = torch.tensor([0.4, 0.6, 0.5])  # observation noise variances (diagonal)


class LinearSSM(ZooModule):
    """z_t = A z_{t-1} + N(0, diag Q) (z_0 = 0), x_t = C z_t + N(0, diag R): the VRNN's site layout
    ("z_1".."z_T" in pyro.markov, one masked "x" of event shape (T, D)) with a linear-Gaussian story."""

    max_plate_nesting = 1

    def __init__(self, steps: int):
        super().__init__()
        self.x_shape = (steps, C.shape[0])
        self.x_numel = math.prod(self.x_shape)

    def check_x(self, x, full=False):
        sequences.check_padding(x)

    def forward(self, x):
        mask = sequences.step_mask(x)
        x = torch.nan_to_num(x, nan=0.0)
        z = x.new_zeros(x.shape[0], A.shape[0])
        locs = []
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(z @ A.T, Q.sqrt()).to_event(1))
                locs.append(z @ C.T)
            d = dist.Normal(torch.stack(locs, -2), R.sqrt()).to_event(1)
            pyro.sample("x", d.mask(mask).to_event(1), obs=x)


class LocallyOptimal(ZooModule):
    """q(z_t | z_{t-1}, x_t) proportional to p(z_t | z_{t-1}) p(x_t | z_t) (closed form; ignores the
    future, so the importance weights still vary); the prior past a sequence's end."""

    def forward(self, x):
        mask = sequences.step_mask(x)
        x = torch.nan_to_num(x, nan=0.0)
        precision = torch.diag(1 / Q) + C.T @ torch.diag(1 / R) @ C
        cov = torch.linalg.inv(precision)
        tril_q, tril_p = torch.linalg.cholesky(cov), torch.diag(Q.sqrt())
        z = x.new_zeros(x.shape[0], A.shape[0])
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                prior = z @ A.T
                loc = (prior / Q + x[:, t] @ torch.diag(1 / R) @ C) @ cov
                here = mask[:, t, None]
                loc = torch.where(here, loc, prior)
                tril = torch.where(here[..., None], tril_q, tril_p)
                z = pyro.sample(f"z_{t + 1}", dist.MultivariateNormal(loc, scale_tril=tril))


def kalman_log_likelihood(x: torch.Tensor) -> torch.Tensor:
    """Exact log p(x_{<=L}) of every NaN-padded sequence of ``x`` under LinearSSM (float64)."""
    a, c, q, r = (t.double() for t in (A, C, Q, R))
    out = []
    for seq in x.double():
        m, p, ll = torch.zeros(2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64), 0.0
        for xt in seq[sequences.step_mask(seq[None])[0]]:
            m, p = a @ m, a @ p @ a.T + torch.diag(q)
            s = c @ p @ c.T + torch.diag(r)
            ll += dist.MultivariateNormal(c @ m, s).log_prob(xt).item()
            gain = p @ c.T @ torch.linalg.inv(s)
            m, p = m + gain @ (xt - c @ m), (torch.eye(2, dtype=torch.float64) - gain @ c) @ p
        out.append(ll)
    return torch.tensor(out, dtype=torch.float64)


def ssm_data(n: int, steps: int, seed: int, ragged: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, steps, C.shape[0])
    z = torch.zeros(n, 2)
    for t in range(steps):
        z = z @ A.T + torch.randn(n, 2, generator=g) * Q.sqrt()
        x[:, t] = z @ C.T + torch.randn(n, 3, generator=g) * R.sqrt()
    if ragged:
        lens = torch.randint(1, steps + 1, (n,), generator=g)
        x[torch.arange(steps) >= lens[:, None]] = math.nan
    return x


def test_kalman_matches_brute_force_gaussian():
    # The filter against the joint Gaussian of x_{1..T}, built from the state-space covariances.
    x = ssm_data(3, 4, seed=5, ragged=False).double()
    a, c = A.double(), C.double()
    cov_z = {}
    m = torch.zeros(8, 8, dtype=torch.float64)  # Cov of (z_1..z_4), stacked
    for t in range(4):
        for s in range(t + 1):
            # Cov(z_t, z_s) = A^{t-s} Var(z_s), Var(z_s) = sum_j A^j Q A^j^T
            var_s = sum(
                torch.linalg.matrix_power(a, j) @ torch.diag(Q.double()) @ torch.linalg.matrix_power(a, j).T
                for j in range(s + 1)
            )
            cov_z[t, s] = torch.linalg.matrix_power(a, t - s) @ var_s
            m[2 * t : 2 * t + 2, 2 * s : 2 * s + 2] = cov_z[t, s]
            m[2 * s : 2 * s + 2, 2 * t : 2 * t + 2] = cov_z[t, s].T
    big_c = torch.block_diag(*[c] * 4)
    cov_x = big_c @ m @ big_c.T + torch.diag(R.double().repeat(4))
    exact = dist.MultivariateNormal(torch.zeros(12, dtype=torch.float64), cov_x).log_prob(x.reshape(3, 12))
    assert torch.allclose(kalman_log_likelihood(x), exact, atol=1e-9)


def test_importance_sampling_converges_to_kalman():
    torch.manual_seed(0)
    x = ssm_data(8, 6, seed=1)
    exact = kalman_log_likelihood(x)
    est = log_likelihood(LinearSSM(6), LocallyOptimal(), x, k=20000)
    err = (est.per_datapoint - exact).abs()
    # Per sequence, within 4 delta-method standard errors plus the estimator's bias (about s.e.^2 / 2)
    # and float32 rounding (1e-5: the weights are float32 sums of a few dozen terms of order 10). For a
    # sequence of length 1 this proposal is the exact posterior: zero variance, only the rounding.
    assert (err <= 4 * est.mc_stderr + est.mc_stderr.pow(2) + 1e-5).all(), (err, est.mc_stderr)
    assert est.mc_stderr.max() < 0.05


def test_iwae_bounds_increase_towards_kalman():
    torch.manual_seed(0)
    x = ssm_data(6, 6, seed=2)
    exact = kalman_log_likelihood(x).sum().item()
    reps = 400
    xr = x.repeat(reps, 1, 1)
    means, ses = [], []
    for k in (1, 4, 32):
        b = (
            IWAE(k=k)
            .per_datapoint(LinearSSM(6), LocallyOptimal(), xr)
            .detach()
            .double()
            .reshape(reps, -1)
            .sum(1)
        )
        means.append(b.mean().item())
        ses.append(b.std().item() / math.sqrt(reps))
    for lo, hi, s_lo, s_hi in zip(means, means[1:], ses, ses[1:], strict=False):
        assert hi - lo > 3 * math.hypot(s_lo, s_hi), (means, ses)
    assert means[-1] <= exact + 3 * ses[-1]
    # The k = 32 bound is within a few standard errors plus the remaining gap of the truth.
    assert exact - means[-1] < 0.1 * (exact - means[0])


def small_vrnn(steps: int, **kw) -> VRNN:
    return VRNN(x_shape=(steps, 5), z_dim=3, h_dim=8, feature=8, hidden=(8,), **kw)


def _same_weights(steps: int, source: VRNN, guide: VRNNGuide) -> tuple[VRNN, VRNNGuide]:
    model = small_vrnn(steps)
    model.load_state_dict(source.state_dict())
    g = VRNNGuide(model)
    g.load_state_dict(guide.state_dict())
    return model, g


def test_padded_sequence_has_the_unpadded_log_weight():
    # One pair of weights; a row of length 3 evaluated inside a T = 6 batch (beside a full row) and
    # alone at T = 3 on the very same latent draws: the log weights agree to float precision.
    torch.manual_seed(0)
    model = small_vrnn(6)
    guide = VRNNGuide(model)
    x = sequences.synthetic(2, 6, 5, seed=3, ragged=False)
    x[0, 3:] = math.nan
    pair = run_pair(model, guide, x, num_particles=7)
    short, short_guide = _same_weights(3, model, guide)
    template = run_pair(short, short_guide, x[:1, :3], num_particles=7).guide_trace
    for t in (1, 2, 3):
        template.nodes[f"z_{t}"]["value"] = pair.guide_sites[f"z_{t}"]["value"][:, :1]
    alone = run_pair(short, poutine.replay(short_guide, trace=template), x[:1, :3], num_particles=7)
    assert torch.allclose(pair.log_weight()[:, 0], alone.log_weight()[:, 0], atol=1e-5)
    # Past the end the VRNN guide proposes from the prior: those steps add exactly zero.
    for t in (4, 5, 6):
        assert torch.equal(pair.log_p(f"z_{t}")[:, 0], pair.log_q(f"z_{t}")[:, 0])


def test_padded_log_likelihood_equals_unpadded():
    torch.manual_seed(1)
    model = small_vrnn(4)
    guide = VRNNGuide(model)
    x = sequences.synthetic(5, 4, 5, seed=4, ragged=False)
    long, long_guide = _same_weights(9, model, guide)
    padded = sequences.pad(list(x), length=9)
    torch.manual_seed(2)
    a = log_likelihood(model, guide, x, k=64)
    torch.manual_seed(2)
    b = log_likelihood(long, long_guide, padded, k=64)
    # The same draws for steps 1..4 (padded steps are drawn after them): equal estimates.
    assert torch.allclose(a.per_datapoint, b.per_datapoint, atol=1e-4)


def test_model_and_guide_sites_agree_and_a_step_trains():
    torch.manual_seed(0)
    model = small_vrnn(5, likelihood="gaussian")
    guide = model.default_guide()
    assert isinstance(guide, VRNNGuide)
    x = torch.randn(4, 5, 5)
    x[1, 2:] = math.nan
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    latent = [n for n, s in m.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "data"]
    assert latent == [f"z_{t}" for t in range(1, 6)] == [n for n in g.nodes if n.startswith("z_")]
    assert m.nodes["x"]["fn"].event_shape == (5, 5)
    # The guide owns only its encoder; the recurrence is the model's.
    assert not set(map(id, guide.parameters())) & set(map(id, model.parameters()))
    params = parameters(model, guide)
    assert len(params) == len(list(model.parameters())) + len(list(guide.parameters()))
    for objective in (ELBO(), IWAE(k=3)):
        loss = objective.differentiable_loss(model, guide, x)
        assert torch.isfinite(loss)
        opt = make_optimizer(params, 1e-2)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
        assert model.cell.weight_hh.grad.abs().sum() > 0
        opt.step()


def test_fit_improves_on_synthetic_sequences():
    torch.manual_seed(0)
    train = sequences.synthetic(128, 8, 5, seed=0)
    model = small_vrnn(8)
    guide = model.default_guide()
    before = log_likelihood(model, guide, train, k=50).mean
    fit(model, guide, train, ELBO(), epochs=15, batch_size=32, lr=1e-2, progress=False)
    after = log_likelihood(model, guide, train, k=50)
    assert after.mean > before + 1.0, (before, str(after))


def test_bad_sequence_data():
    model = small_vrnn(4)
    guide = model.default_guide()
    ragged = [torch.zeros(4, 5), torch.zeros(3, 5)]
    with pytest.raises(DataError, match="sequences.pad"):
        fit(model, guide, ragged, ELBO(), epochs=1)
    with pytest.raises(DataError, match="length 0"):
        sequences.pad([torch.zeros(2, 5), torch.zeros(0, 5)])
    empty_row = sequences.synthetic(3, 4, 5, ragged=False)
    empty_row[1] = math.nan
    with pytest.raises(DataError, match="sequence 1 has length 0"):
        log_likelihood(model, guide, empty_row, k=2)
    inside = sequences.synthetic(3, 4, 5, ragged=False)
    inside[2, 1, 0] = math.nan
    with pytest.raises(DataError, match="sequence 2 has NaN in some features of step 1"):
        fit(model, guide, inside, ELBO(), epochs=1)
    gap = sequences.synthetic(3, 4, 5, ragged=False)
    gap[0, 1] = math.nan
    with pytest.raises(DataError, match="NaN step before step 2"):
        log_likelihood(model, guide, gap, k=2)
    with pytest.raises(DataError, match="x_shape"):
        log_likelihood(model, guide, torch.zeros(3, 5, 5), k=2)
    with pytest.raises(ConfigError, match="steps, features"):
        VRNN(x_shape=(1, 28, 28))
    with pytest.raises(DataError, match="Bernoulli"):
        fit(model, guide, torch.full((3, 4, 5), 0.5), ELBO(), epochs=1)


def test_model_reuses_the_guides_recurrence_with_the_same_gradients():
    torch.manual_seed(0)
    model = small_vrnn(6)
    guide = VRNNGuide(model)
    x = sequences.synthetic(4, 6, 5, seed=7)
    calls = []
    model.cell.register_forward_hook(lambda *_: calls.append(1))

    def grads(handoff: bool):
        calls.clear()
        for p in parameters(model, guide):
            p.grad = None
        take = model._handoff.take
        if not handoff:
            model._handoff.take = lambda *a: None
        torch.manual_seed(3)
        loss = IWAE(k=3).differentiable_loss(model, guide, x)
        model._handoff.take = take
        loss.backward()
        return loss.item(), [p.grad.clone() for p in parameters(model, guide)], len(calls)

    loss_a, grads_a, calls_a = grads(True)
    loss_b, grads_b, calls_b = grads(False)
    assert (calls_a, calls_b) == (5, 10)  # the GRU runs once per step, in the guide only
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # Parameters stepped between the guide's run and the model's replay: stale, so the model recomputes.
    guide_trace = poutine.trace(guide).get_trace(x)
    with torch.no_grad():
        model.cell.weight_hh.add_(0.1)
    calls.clear()
    poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert len(calls) == 5
    # Unchanged parameters: the replay takes all five states.
    guide_trace = poutine.trace(guide).get_trace(x)
    calls.clear()
    poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert len(calls) == 0


def test_gap_study_runs_on_padded_sequences():
    from vaezoo.analysis import amortization_gap

    torch.manual_seed(0)
    model = small_vrnn(6)
    x = sequences.synthetic(4, 6, 5, seed=2)  # ragged: NaN-padded rows
    table = amortization_gap(
        model,
        model.default_guide(),
        x,
        is_k=100,
        ais_intermediate=20,
        ais_chains=2,
        local_steps=30,
        flow=False,
        family="ffg",
        eval_k=50,
        batch_size=4,
    )
    rows = table.rows
    assert all(torch.isfinite(r.per_datapoint).all() for r in rows.values())
    # Every ELBO sits below log p(x) (up to Monte Carlo error).
    tol = 3 * math.hypot(rows["log_px"].stderr, rows["amortized"].stderr) + 1e-3
    assert rows["amortized"].mean <= rows["log_px"].mean + tol
    assert rows["ffg"].mean >= rows["amortized"].mean - 3 * rows["ffg"].stderr - 3 * rows["amortized"].stderr


def test_prior_samples_feed_each_drawn_step_back_into_the_recurrence():
    # p(x_{<=T}) draws x_t and conditions the next step on it; running the model with its observation
    # removed would feed the placeholder data (zeros) into phi_x instead.
    from vaezoo.analysis import prior_samples

    torch.manual_seed(0)
    model = VRNN(x_shape=(5, 4), z_dim=2, h_dim=6, feature=3, hidden=(8,))
    seen = []
    handle = model.phi_x.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    x = prior_samples(model, 7, mean=False)
    handle.remove()
    assert x.shape == (7, 5, 4) and set(x.unique().tolist()) <= {0.0, 1.0} and x.sum() > 0
    assert len(seen) == 4
    for t, fed in enumerate(seen):
        assert torch.equal(fed, x[:, t])
    means = prior_samples(model, 7, mean=True)
    assert means.shape == (7, 5, 4) and ((means > 0) & (means < 1)).all()
