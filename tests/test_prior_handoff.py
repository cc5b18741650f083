"""The Ladder VAE's model reuses the priors its guide computed: same values and gradients, never stale."""

import pytest
import torch
from pyro import poutine

from tests.conftest import binary_batch
from vaezoo import ELBO
from vaezoo.inference import run_pair
from vaezoo.inference.fit import parameters
from vaezoo.nets import FeatureBatchNorm
from vaezoo.registry import build_model

SHAPE = (1, 6, 6)


def lvae(**kw):
    model = build_model("lvae", x_shape=SHAPE, z_dims=(4, 3, 2), hidden=(8,), **kw)
    return model, model.default_guide()


def fresh_priors(model, trace):
    """log p(z_j | z_{j+1}) of every lower layer, recomputed from the networks as they are now."""
    zs = [trace.nodes[s]["value"] for s in model.layer_sites]
    out = []
    for j in range(model.num_layers - 1):
        loc, scale = model.top_down[j](zs[j + 1]).chunk(2, -1)
        scale = torch.nn.functional.softplus(scale) + model.config.min_scale
        out.append(torch.distributions.Normal(loc, scale).log_prob(zs[j]).sum(-1))
    return out


def model_log_priors(model, trace):
    return [trace.nodes[s]["fn"].log_prob(trace.nodes[s]["value"]) for s in model.layer_sites[:-1]]


def log_prob(trace, name):
    return trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]).sum()


def replay(model, guide, x, between=None):
    guide_trace = poutine.trace(guide).get_trace(x)
    if between is not None:
        between()
    return guide_trace, poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)


def test_reused_priors_give_the_same_loss_and_gradients(float64):
    model, guide = lvae()
    x = binary_batch(6, SHAPE)
    grads = []
    for clear in (False, True):  # clearing between guide and model forces the model to recompute
        torch.manual_seed(3)
        before = model._prior_handoff.clear if clear else None
        guide_trace, model_trace = replay(model, guide, x, before)
        log_p = sum(log_prob(model_trace, n) for n in (*model.layer_sites, "x"))
        log_w = log_p - sum(log_prob(guide_trace, n) for n in model.layer_sites)
        params = parameters(model, guide)
        grads.append((log_w.detach(), torch.autograd.grad(log_w, params)))
    (w_reuse, g_reuse), (w_fresh, g_fresh) = grads
    assert torch.allclose(w_reuse, w_fresh, rtol=1e-12)
    for a, b in zip(g_reuse, g_fresh, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_model_runs_the_top_down_networks_once_per_step():
    """Batch-norm running means move once, as for a single top-down pass, not twice."""
    model, guide = lvae(batch_norm=True)
    bn = next(m for m in model.top_down.modules() if isinstance(m, FeatureBatchNorm))
    calls = []
    bn.register_forward_hook(lambda *_: calls.append(1))
    ELBO().loss(model, guide, binary_batch(6, SHAPE))
    assert len(calls) == 1 and bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("change", ["parameters", "mode", "grad_mode"])
def test_stale_priors_are_recomputed(change):
    model, guide = lvae(batch_norm=True)
    x = binary_batch(6, SHAPE)

    def between():
        if change == "parameters":  # what an optimizer step does between two runs
            with torch.no_grad():
                for p in model.top_down.parameters():
                    p.add_(0.5)
        elif change == "mode":
            model.eval()

    if change == "grad_mode":
        with torch.no_grad():
            guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
        assert all(t.requires_grad for t in model_log_priors(model, model_trace))
    else:
        guide_trace, model_trace = replay(model, guide, x, between)
    for got, want in zip(model_log_priors(model, model_trace), fresh_priors(model, guide_trace), strict=True):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_other_tensors_and_second_requests_are_not_served():
    model, guide = lvae()
    x = binary_batch(6, SHAPE)
    guide_trace = poutine.trace(guide).get_trace(x)
    handoff, net = model._prior_handoff, model.top_down[0]
    upper = [guide_trace.nodes[s]["value"] for s in ("z2", "z3")]
    assert handoff.take(0, [upper[0].clone(), upper[1]], net) is None  # equal values, other tensor
    guide_trace = poutine.trace(guide).get_trace(x)
    upper = [guide_trace.nodes[s]["value"] for s in ("z2", "z3")]
    assert handoff.take(0, upper, net) is not None
    assert handoff.take(0, upper, net) is None  # taken at most once


def test_iwae_particles_and_run_pair_agree_with_a_fresh_model_run():
    model, guide = lvae(batch_norm=False)
    x = binary_batch(5, SHAPE)
    torch.manual_seed(0)
    pair = run_pair(model, guide, x, num_particles=4)
    fresh = fresh_priors(model, pair.guide_trace)
    for got, want in zip(model_log_priors(model, pair.model_trace), fresh, strict=True):
        assert got.shape == (4, 5) and torch.allclose(got, want, rtol=1e-5, atol=1e-5)
