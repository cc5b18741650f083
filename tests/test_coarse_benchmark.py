"""The hand-written references of benchmarks/step_time_coarse.py compute vaezoo's losses of the PixelVAE
(ELBO, one and two levels), the sequential VAE (stepwise) and the multi-stage VAE (multistage): the same
loss and the same gradients on the same weights and noise, so the benchmark times the same work."""

import sys
from pathlib import Path

import pytest
import torch

from vaezoo.inference.fit import parameters
from vaezoo.inference.traces import run_pair
from vaezoo.registry import build_model, build_objective

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from coarse_references import REFERENCES  # noqa: E402

PIXEL = {
    "x_shape": (1, 8, 8),
    "z_dim": 3,
    "upsample_channels": (3, 4),
    "condition_channels": 3,
    "layers": 2,
    "kernel_size": 3,
    "channels": 4,
    "latent_channels": 2,
    "prior_hidden": 6,
}
# Settings away from the defaults where a default would hide a term: stepwise weights that are not 1,
# a beta that is not 1, unshared step networks, l1 and l2 weights that differ.
CASES = {
    "pixel_vae-1": ("pixel_vae", {**PIXEL, "levels": 1}, "elbo", {}),
    "pixel_vae-2": ("pixel_vae", {**PIXEL, "levels": 2}, "elbo", {}),
    "sequential_vae": (
        "sequential_vae",
        {"x_shape": (1, 4, 4), "steps": 3, "z_dim": 2, "hidden": (6,), "shared": False},
        "stepwise",
        {"auxiliary_weight": 0.6, "beta": 1.7},
    ),
    "sequential_vae-shared": (
        "sequential_vae",
        {"x_shape": (1, 4, 4), "steps": 2, "z_dim": 3, "hidden": (5,)},
        "stepwise",
        {},
    ),
    "multistage_vae": (
        "multistage_vae",
        {"x_shape": (1, 8, 8), "z_dim": 3, "channels": (3, 4), "refine_channels": 3, "refine_blocks": 2},
        "multistage",
        {"l2_weight": 0.8, "l1_weight": 1.9, "beta": 0.7},
    ),
}


def setup(case: str):
    name, config, objective_name, objective_config = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, **config)
    guide = model.default_guide()
    with torch.no_grad():  # away from the initialization (the refiner's last layer starts at zero)
        for p in parameters(model, guide):
            p.add_(0.3 * torch.randn_like(p))
    objective = build_objective(objective_name, **objective_config)
    reference = REFERENCES[name](model, guide, objective)
    binary = model.binary_data
    x = torch.bernoulli(torch.full((5, *model.x_shape), 0.5)) if binary else torch.rand(5, *model.x_shape)
    return model, guide, objective, reference, x


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_written_loss_and_gradients_equal_vaezoo(case, float64):
    model, guide, objective, reference, x = setup(case)
    with torch.no_grad():
        pair = run_pair(model, guide, x)
        closed = {n for n in pair.latent if pair.analytic_kl(n) is not None}
    assert closed == set(reference.closed_form)
    torch.manual_seed(1)
    ours = objective.differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    theirs = reference.loss(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    # Every reference parameter against its vaezoo original (same attribute, same order in the copy).
    owners = {"model": model, "guide": guide}
    pairs = [
        (mine, ref)
        for owner, attribute in reference.parts
        for mine, ref in zip(
            getattr(owners[owner], attribute).parameters(),
            getattr(reference, attribute).parameters(),
            strict=True,
        )
    ]
    everything = list(parameters(model, guide))
    grads = torch.autograd.grad(ours, everything, allow_unused=True)
    by_id = dict(zip(map(id, everything), grads, strict=True))
    ref_grads = torch.autograd.grad(theirs, [r for _, r in pairs])
    # The parameters vaezoo's loss reaches are exactly those the reference copied (the multi-stage
    # VAE's learned scales are not reached by the multistage loss).
    assert {i for i, g in by_id.items() if g is not None} == {id(m) for m, _ in pairs}
    for (mine, _), g in zip(pairs, ref_grads, strict=True):
        torch.testing.assert_close(by_id[id(mine)], g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["pixel_vae-2", "sequential_vae", "multistage_vae"])
def test_another_noise_draw_would_be_caught(case):
    """The check has power: the loss with another draw of z differs by far more than the tolerance."""
    model, guide, objective, reference, x = setup(case)
    torch.manual_seed(1)
    ours = objective.loss(model, guide, x)
    torch.manual_seed(2)
    with torch.no_grad():
        assert abs(reference.loss(x).item() - ours) > 1e-3


def test_benchmark_smoke_runs_and_agrees(capsys):
    import step_time_coarse

    step_time_coarse.main(["--smoke"])
    out = capsys.readouterr().out
    assert out.count("-> agree") == 4 and "MISMATCH" not in out
