"""The hand-written references of benchmarks/step_time_flows.py compute vaezoo's ELBO with a flow guide:
the same loss and the same gradients on the same weights and noise, so the benchmark times the same work."""

import sys
from pathlib import Path

import pytest
import torch

from vaezoo import ELBO
from vaezoo.inference.fit import parameters
from vaezoo.registry import build_guide, build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from flow_references import REFERENCES  # noqa: E402

SMALL = {  # small networks, but every flow feature: context, several steps, rank < D
    "iaf": {"steps": 3, "made_hidden": (16, 16), "context": 4},
    "planar": {"steps": 3},
    "sylvester": {"steps": 2, "rank": 3},
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_hand_written_loss_and_gradients_equal_vaezoo_elbo(name, float64):
    torch.manual_seed(0)
    model = build_model("vae", x_shape=(1, 4, 4), z_dim=5, hidden=(8,))
    guide = build_guide(name, model, hidden=(12,), **SMALL[name])
    with torch.no_grad():  # away from the near-identity initialization, so every term matters
        for p in guide.parameters():
            p.add_(0.3 * torch.randn_like(p))
    reference = REFERENCES[name](model, guide)
    x = torch.bernoulli(torch.full((6, *model.x_shape), 0.5))
    torch.manual_seed(1)
    ours = ELBO().differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    theirs = reference.loss(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    # The same gradients, parameter by parameter (the reference deep-copies the modules in order).
    mine = torch.autograd.grad(ours, list(parameters(model, guide)))
    ref_params = dict(reference.named_parameters())
    grads = dict(zip(ref_params, torch.autograd.grad(theirs, list(ref_params.values())), strict=True))
    named = {f"decoder.{n}": p for n, p in model.decoder.named_parameters()}
    named.update({n: p for n, p in guide.named_parameters()})
    by_param = dict(zip(map(id, parameters(model, guide)), mine, strict=True))
    for ref_name, g in grads.items():
        torch.testing.assert_close(by_param[id(named[ref_name])], g, rtol=1e-10, atol=1e-12)


def test_a_different_kl_estimator_would_be_caught():
    """The check has power: the ELBO with another noise draw differs by far more than the tolerance."""
    torch.manual_seed(0)
    model = build_model("vae", x_shape=(1, 4, 4), z_dim=5, hidden=(8,))
    guide = build_guide("iaf", model, hidden=(12,), **SMALL["iaf"])
    reference = REFERENCES["iaf"](model, guide)
    x = torch.bernoulli(torch.full((6, *model.x_shape), 0.5))
    torch.manual_seed(1)
    ours = ELBO().loss(model, guide, x)
    torch.manual_seed(2)
    assert abs(reference.loss(x).item() - ours) > 1e-3
