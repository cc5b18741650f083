"""ZooModule: vaezoo's objectives skip PyroModule's param statements; Pyro's SVI still sees every one."""

import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from tests.conftest import binary_batch
from vaezoo import ELBO
from vaezoo.inference import run_pair
from vaezoo.inference.fit import parameters
from vaezoo.registry import build_model
from vaezoo.zoo_module import param_statements_skipped

SHAPE = (1, 6, 6)
PAIRS = {
    "vae": dict(z_dim=2, hidden=(8,)),
    "lvae": dict(z_dims=(3, 2), hidden=(8,)),  # the ladder guide reads the model's top-down networks
    "hvae": dict(z_dims=(3, 2), hidden=(8,)),
    "vlae": dict(z_dims=(2, 2), hidden=(8,)),
}


def pair(name):
    model = build_model(name, x_shape=SHAPE, **PAIRS[name])
    return model, model.default_guide()


def param_nodes(trace):
    return {n for n, s in trace.nodes.items() if s["type"] == "param"}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_run_pair_skips_statements_and_changes_no_value(name):
    model, guide = pair(name)
    x = binary_batch(4, SHAPE)
    torch.manual_seed(1)
    quiet = run_pair(model, guide, x, num_particles=2)
    assert not param_nodes(quiet.model_trace) and not param_nodes(quiet.guide_trace)
    # The same run inside an outer handler announces the parameters, and computes the same numbers.
    torch.manual_seed(1)
    with poutine.trace(param_only=True) as outer:
        loud = run_pair(model, guide, x, num_particles=2)
    assert param_nodes(loud.model_trace) and param_nodes(loud.guide_trace)
    assert torch.equal(quiet.log_weight(), loud.log_weight())
    seen = {id(s["value"]) for s in outer.trace.nodes.values()}
    assert seen == {id(p) for p in parameters(model, guide)}


def test_skipping_is_off_under_an_outer_handler_and_nests():
    with param_statements_skipped() as skipped:
        assert skipped
        with poutine.trace(), param_statements_skipped() as inner:
            assert not inner  # this call would not skip on its own; the outer one still does
    with poutine.trace(), param_statements_skipped() as skipped:
        assert not skipped


@pytest.mark.parametrize("name", ["lvae", "vae"])
def test_pyro_svi_trains_every_parameter(name):
    """Pyro's own SVI + pyro.optim finds all parameters through the statements, shared ones included."""
    model, guide = pair(name)
    before = {id(p): p.detach().clone() for p in parameters(model, guide)}
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(binary_batch(8, SHAPE))
    store = pyro.get_param_store()
    assert {id(store[n]) for n in store.keys()} == set(before)
    changed = {id(p) for p in parameters(model, guide) if not torch.equal(p.detach(), before[id(p)])}
    assert changed == set(before)


def test_svi_with_a_vaezoo_objective_as_loss_sees_every_parameter():
    """SVI(loss=objective.loss) captures params around the loss: skipping must stay off there."""
    model, guide = pair("lvae")
    before = {id(p): p.detach().clone() for p in parameters(model, guide)}
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=ELBO().differentiable_loss)
    svi.step(binary_batch(8, SHAPE))
    changed = {id(p) for p in parameters(model, guide) if not torch.equal(p.detach(), before[id(p)])}
    assert changed == set(before)
