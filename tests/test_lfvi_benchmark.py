"""The hand-written lfvi step of benchmarks/step_time_adversarial.py does vaezoo's work: the same guide loss
and gradient, and the same ratio-network update, on the same weights and noise."""

import sys
from pathlib import Path

import torch

from vaezoo.guides.affine_normal import AffineNormal
from vaezoo.inference.likelihood_free import LFVI
from vaezoo.models.implicit import ImplicitGaussian
from vaezoo.nets import frozen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from lfvi_reference import HandWrittenLFVI  # noqa: E402


def setup():
    torch.manual_seed(0)
    model = ImplicitGaussian(x_shape=(4,), z_dim=3, noise_scale=0.7, seed=0)
    guide = AffineNormal(model)
    with torch.no_grad():  # away from the prior, so that A, c and L all enter the loss
        guide.loc.weight.normal_(0, 0.5)
        guide.loc.bias.normal_(0, 0.5)
        guide.raw_tril[0].normal_(0, 0.5)
    objective = LFVI(ratio_hidden=(8, 6), ratio_lr=0.05, ratio_steps=2)
    objective.ratio_network(width=4 + 3)
    x = model.sample_x(6)
    return model, guide, objective, HandWrittenLFVI(model, guide, objective), x


def test_guide_loss_and_gradient_equal_vaezoo(float64):
    model, guide, objective, reference, x = setup()
    with frozen(model):
        torch.manual_seed(1)
        ours = objective.differentiable_loss(model, guide, x)
        ours_grads = torch.autograd.grad(ours, [guide.loc.weight, guide.loc.bias, guide.raw_tril[0]])
    torch.manual_seed(1)
    theirs = reference.guide_loss(x)
    theirs_grads = torch.autograd.grad(theirs, reference.guide_params)
    torch.manual_seed(2)  # other noise gives another loss: the comparison can fail
    other = reference.guide_loss(x)
    assert abs(ours.item() - theirs.item()) <= 1e-10 * abs(theirs.item())
    assert abs(other.item() - theirs.item()) > 1e-4
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        assert b.abs().max() > 1e-6


def test_ratio_updates_equal_vaezoo(float64):
    model, guide, objective, reference, x = setup()
    before = [p.detach().clone() for p in reference.ratio_params]
    with frozen(model):
        torch.manual_seed(3)
        ours = [objective.ratio_step(model, guide, x).item() for _ in range(2)]  # the 2nd uses Adam's moments
    torch.manual_seed(3)
    theirs = [reference.ratio_step(x) for _ in range(2)]
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=1e-10, atol=0)
    for a, b, start in zip(objective.ratio_parameters(), reference.ratio_params, before, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-9, atol=1e-12)
        assert (b.detach() - start).abs().max() > 1e-3  # the update moved the weights
