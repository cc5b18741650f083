"""The model/guide/objective contract over everything registered (../shared/DESIGN.md section 1).

For every model x every guide that can serve it x every objective: site names and shapes agree,
one optimizer step runs with a finite loss, and ``loss`` equals ``differentiable_loss`` on the
same random numbers.

The full product grows as models x guides x objectives (over 3000 cases), so the default run takes
the triples that span it: every model with every guide under ``elbo``, every model with its default
guide under every objective, and every guide with every objective on ``vae``. The rest is marked
``slow`` (``python -m pytest -m slow tests/test_contract.py`` runs it).
"""

import itertools

import pytest
import torch
from pyro import poutine

from vaezoo import ConfigError
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES, build_guide, build_model, build_objective

SMALL = {"vae": {"x_shape": (1, 6, 6), "z_dim": 3, "hidden": (8,)}, "linear_gaussian": {"x_shape": (4,)}}
SMALL.update(
    {
        "hvae": {"x_shape": (1, 6, 6), "z_dims": (3, 2), "hidden": (8,)},
        "markov_hvae": {"x_shape": (1, 6, 6), "z_dims": (3, 2), "hidden": (8,)},
        "lvae": {"x_shape": (1, 6, 6), "z_dims": (3, 2), "hidden": (8,)},
        "vlae": {"x_shape": (1, 6, 6), "z_dims": (3, 2), "hidden": (8,)},
    }
)
SMALL["vrnn"] = {"x_shape": (4, 3), "z_dim": 2, "h_dim": 5, "feature": 4, "hidden": (6,)}
SMALL["mvae"] = {"image_shape": (1, 6, 6), "z_dim": 3, "hidden": (8,), "label_hidden": (8,)}
SMALL["block_spin"] = {"L": 4, "levels": 2, "channels": 4, "depth": 1}
SMALL["ising_vlae"] = {"L": 4, "levels": 2, "channels": 4, "depth": 1}
SMALL["vqvae"] = {"x_shape": (1, 8, 8), "codebook_size": 4, "code_dim": 3, "channels": 4, "prior_channels": 4,
                  "prior_layers": 1}
SMALL["nvae"] = {
    "x_shape": (1, 6, 6),
    "canvas": 8,
    "channels": 2,
    "preprocess_blocks": 1,
    "latent_channels": 2,
}
SMALL["implicit_gaussian"] = {"x_shape": (4,)}
SMALL["pixel_vae"] = {"x_shape": (1, 4, 4), "z_dim": 3, "upsample_channels": (4,), "condition_channels": 2,
                      "layers": 2, "kernel_size": 3, "channels": 4}
SMALL["sequential_vae"] = {"x_shape": (1, 6, 6), "steps": 2, "z_dim": 3, "hidden": (8,)}
SMALL["multistage_vae"] = {"x_shape": (1, 6, 6), "z_dim": 3, "channels": (4,), "refine_channels": 4,
                           "refine_blocks": 1}


def test_every_model_has_a_small_config_here():
    assert set(MODELS.names()) == set(SMALL), "add the new model's small test config to SMALL"


def contract_cases():
    """Every (model, guide, objective), the ones outside the spanning set marked slow."""
    defaults = {m: build_model(m, SMALL[m]).default_guide_name for m in MODELS.names()}
    for m, g, o in itertools.product(MODELS.names(), GUIDES.names(), OBJECTIVES.names()):
        spanning = o == "elbo" or m == "vae" or g == defaults[m]
        yield pytest.param(m, g, o, marks=() if spanning else (pytest.mark.slow,))


@pytest.mark.parametrize(("model_name", "guide_name", "objective_name"), list(contract_cases()))
def test_pair_contract(model_name, guide_name, objective_name):
    torch.manual_seed(0)
    model = build_model(model_name, SMALL[model_name])
    try:
        guide = build_guide(guide_name, model)
    except ConfigError as e:  # the guide says why it cannot serve this model
        pytest.skip(str(e))
    objective = build_objective(objective_name)
    x = model.example_x(5)
    if model.binary_data:
        x = torch.bernoulli(torch.full_like(x, 0.4))
    try:
        objective.check_pair(model, guide, x)
    except ConfigError as e:  # the objective says why it cannot train this pair
        pytest.skip(str(e))

    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    latent = {
        n: s for n, s in m.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "data"
    }
    guided = {n: s for n, s in g.nodes.items() if s["type"] == "sample" and n != "data"}
    assert set(latent) == set(guided)
    for name in latent:
        assert latent[name]["fn"].event_shape == guided[name]["fn"].event_shape
        assert latent[name]["value"].shape == guided[name]["value"].shape
    assert "x" in m.nodes and m.nodes["x"]["is_observed"]

    if objective.needs_likelihood and not model.has_likelihood:  # a simulator: no density to score
        with pytest.raises(ConfigError, match="no density.*'lfvi'"):
            objective.differentiable_loss(model, guide, x)
        return

    torch.manual_seed(1)
    loss = objective.differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    assert objective.loss(model, guide, x) == pytest.approx(loss.item(), rel=1e-6)
    assert torch.isfinite(loss)
    params = parameters(model, guide)
    before = [p.detach().clone() for p in params]
    opt = make_optimizer(params, 1e-2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))
