"""The hand-written references of benchmarks/step_time_objectives.py compute vaezoo's beta_tcvae, info_vae
and vq losses: the same loss and the same gradients on the same weights and noise, so the benchmark
times the same work."""

import math
import sys
from pathlib import Path

import pytest
import torch

from vaezoo.inference.fit import parameters
from vaezoo.registry import build_guide, build_model, build_objective

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from objective_references import REFERENCES  # noqa: E402

# Small networks; settings away from the defaults where a default would hide a term: beta-TCVAE with
# alpha, beta, gamma all different and a small N (so the own-datapoint weight differs visibly from the
# others), InfoVAE with alpha < 1 (so its KL term counts), VQ with a short dead-code horizon.
CASES = {
    "beta_tcvae": ("vae", "amortized", {"dataset_size": 50, "alpha": 0.7, "beta": 4.0, "gamma": 1.3}),
    "info_vae": ("vae", "amortized", {"alpha": 0.4, "lam": 20.0, "bandwidth": 0.7}),
    "vq": ("vqvae", "vq", {"commitment": 0.3}),
}
MODELS = {
    "vae": {"x_shape": (1, 4, 4), "z_dim": 5, "hidden": (8,)},
    "vqvae": {"x_shape": (1, 8, 8), "codebook_size": 6, "code_dim": 3, "channels": 4, "dead_after": 1},
}
GUIDES = {"amortized": {"hidden": (12,)}, "vq": {"channels": 4}}


def setup(name: str):
    model_name, guide_name, objective_config = CASES[name]
    torch.manual_seed(0)
    model = build_model(model_name, **MODELS[model_name])
    guide = build_guide(guide_name, model, **GUIDES[guide_name])
    objective = build_objective(name, **objective_config)
    reference = REFERENCES[name](model, guide, objective)
    x = torch.bernoulli(torch.full((6, *model.x_shape), 0.5))
    return model, guide, objective, reference, x


def named_vaezoo_parameters(model, guide) -> dict[str, torch.nn.Parameter]:
    """vaezoo's parameters under the names the references give their copies."""
    named = {f"decoder.{n.removeprefix('net.')}": p for n, p in model.decoder.named_parameters()}
    encoder = getattr(guide.encoder, "net", guide.encoder)
    named.update({f"encoder.{n}": p for n, p in encoder.named_parameters()})
    if hasattr(guide, "head"):
        named.update({f"head.{n}": p for n, p in guide.head.named_parameters()})
    if hasattr(model, "codebook"):
        named["codebook"] = model.codebook.vectors
    return named


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_hand_written_loss_and_gradients_equal_vaezoo(name, float64):
    model, guide, objective, reference, x = setup(name)
    torch.manual_seed(1)
    ours = objective.differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    theirs = reference.loss(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    ref_params = dict(reference.named_parameters())
    grads = dict(zip(ref_params, torch.autograd.grad(theirs, list(ref_params.values())), strict=True))
    everything = list(parameters(model, guide))
    mine = torch.autograd.grad(ours, everything, allow_unused=True)
    by_id = dict(zip(map(id, everything), mine, strict=True))
    named = named_vaezoo_parameters(model, guide)
    assert set(named) == set(grads)
    # Every parameter the vaezoo loss reaches has its copy in the reference (a VQ-VAE's PixelCNN prior
    # is not reached in stage 1).
    assert {i for i, g in by_id.items() if g is not None} == {id(p) for p in named.values()}
    for ref_name, g in grads.items():
        torch.testing.assert_close(by_id[id(named[ref_name])], g, rtol=1e-10, atol=1e-12)


def test_vq_codebook_bookkeeping_matches_over_steps(float64):
    """Restarts of unused codes (first batch, then after dead_after=1 unused batch) move both codebooks
    alike; the loss of one step does not show them (it uses only codes in use), later steps do."""
    model, guide, objective, reference, x = setup("vq")
    for step in range(3):
        torch.manual_seed(10 + step)
        ours = objective.differentiable_loss(model, guide, x[step:])
        torch.manual_seed(10 + step)
        theirs = reference.loss(x[step:])
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
        torch.testing.assert_close(model.codebook.vectors.detach(), reference.codebook.detach(),
                                   rtol=0, atol=0)
        assert torch.equal(model.codebook.unused_steps, reference.unused)


@pytest.mark.parametrize("name", ["beta_tcvae", "info_vae"])
def test_other_noise_would_be_caught(name, float64):
    """The check has power: the same loss with another noise draw differs by far more than the tolerance."""
    model, guide, objective, reference, x = setup(name)
    torch.manual_seed(1)
    ours = objective.loss(model, guide, x)
    torch.manual_seed(2)
    assert abs(reference.loss(x).item() - ours) > 1e-3


def test_beta_tcvae_with_the_papers_printed_estimator_would_be_caught(float64):
    """Weighting every datapoint 1/(N M), as the paper prints it, moves the loss by far more than the
    tolerance."""
    model, guide, objective, reference, x = setup("beta_tcvae")
    torch.manual_seed(1)
    ours = objective.loss(model, guide, x)
    m, n = x.shape[0], reference.n
    reference.mws_log_density = lambda log_q: torch.logsumexp(log_q, 1) - math.log(n * m)
    torch.manual_seed(1)
    assert abs(reference.loss(x).item() - ours) > 1e-2
