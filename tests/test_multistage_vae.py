"""The multi-stage VAE and the multistage objective: the paper's loss by hand, the honest bound."""

import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from vaezoo import ConfigError, DataError
from vaezoo.data import bits_per_dim
from vaezoo.distributions import pixel_likelihood
from vaezoo.inference import ELBO, MultiStage, Stepwise, log_likelihood
from vaezoo.models import VAE, MultiStageVAE
from vaezoo.models.auxiliary import AUXILIARY

SMALL = {"x_shape": (1, 8, 8), "z_dim": 3, "channels": (4, 6), "refine_channels": 4, "refine_blocks": 2}


def grey(n, shape=(1, 8, 8), seed=3):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def kick(module, seed=0):
    """Move every parameter off its start, so the refiner (zero-initialized output) is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_sites_shapes_and_stages():
    model = MultiStageVAE(SMALL)
    guide = model.default_guide()
    x = grey(5)
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    assert g.nodes["z"]["value"].shape == (5, 3)
    site = m.nodes["x"]
    assert site["is_observed"] and isinstance(site["fn"].base_dist, torch.distributions.Laplace)
    (coarse,) = site["infer"][AUXILIARY]
    assert isinstance(coarse.base_dist, torch.distributions.Normal) and coarse.event_shape == (1, 8, 8)
    one = MultiStageVAE(SMALL, stages=1, likelihood="gaussian")
    g = poutine.trace(one.default_guide()).get_trace(x)
    site = poutine.trace(poutine.replay(one, trace=g)).get_trace(x)
    assert site.nodes["x"]["infer"][AUXILIARY] == () and isinstance(
        site.nodes["x"]["fn"].base_dist, torch.distributions.Normal
    )


def test_fresh_refiner_is_the_identity_and_stage_one_is_shared_with_the_reference():
    model = MultiStageVAE(SMALL)
    z = torch.randn(2, 7, 3)  # particle and data dimensions
    m1, m2 = model.stage_means(z)
    assert m1.shape == (2, 7, 1, 8, 8) and torch.equal(m1, m2)
    one = MultiStageVAE(SMALL, stages=1)
    n_refiner = sum(p.numel() for p in model.refiner.parameters()) + 64  # plus the coarse scale
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in one.parameters()) + n_refiner


def hand(model, guide, x, seed):
    d = guide.site_dists(x)["z"]
    torch.manual_seed(seed)
    z = d.rsample()
    loc, scale = d.base_dist.loc, d.base_dist.scale
    kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
    m1, m2 = model.stage_means(z)
    return m1, m2, kl


def test_multistage_objective_is_the_papers_sum(float64):
    model = MultiStageVAE(SMALL)
    kick(model)
    guide = model.default_guide()
    x = grey(6)
    m1, m2, kl = hand(model, guide, x, seed=4)
    torch.manual_seed(4)
    got = MultiStage(l2_weight=0.7, l1_weight=1.3).per_datapoint(model, guide, x)
    l2 = ((x - m1) ** 2).flatten(1).sum(-1)
    l1 = (x - m2).abs().flatten(1).sum(-1)
    assert not torch.allclose(m1, m2)
    assert torch.allclose(got, -(0.7 * l2 + 1.3 * l1) - kl, rtol=1e-12, atol=1e-10)


def test_bound_is_the_elbo_of_the_laplace_program(float64):
    model = MultiStageVAE(SMALL)
    kick(model)
    guide = model.default_guide()
    x = grey(6)
    _, m2, kl = hand(model, guide, x, seed=9)
    b = F.softplus(model.raw_scale) + 1e-3
    laplace = (-(2 * b).log() - (x - m2).abs() / b).flatten(1).sum(-1)
    torch.manual_seed(9)
    bound = MultiStage(l2_weight=5.0).bound(model, guide, x)
    assert torch.allclose(bound, laplace - kl, rtol=1e-12, atol=1e-10)
    torch.manual_seed(9)
    assert torch.allclose(bound, ELBO().per_datapoint(model, guide, x), rtol=1e-12)
    torch.manual_seed(9)
    assert torch.allclose(Stepwise().bound(model, guide, x), bound, rtol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_pixel_likelihoods_against_closed_forms(float64, kind):
    g = torch.Generator().manual_seed(0)
    loc, raw, x = (torch.randn(3, 1, 4, 4, generator=g) for _ in range(3))
    s = F.softplus(raw) + 1e-3
    got = pixel_likelihood(kind, loc, raw, 3).log_prob(x)
    if kind == "gaussian":
        want = -0.5 * torch.log(2 * math.pi * s**2) - (x - loc) ** 2 / (2 * s**2)
    else:
        want = -torch.log(2 * s) - (x - loc).abs() / s
    assert torch.allclose(got, want.flatten(1).sum(-1), rtol=1e-12)
    vae = VAE(x_shape=(1, 4, 4), z_dim=2, hidden=(5,), likelihood=kind)
    assert type(vae.x_dist(torch.zeros(2)).base_dist) is type(pixel_likelihood(kind, loc, raw, 3).base_dist)


def test_multistage_equals_stepwise_with_fixed_scales_up_to_a_constant(float64):
    """l2 / l1 losses are Gaussian / Laplace log-densities, sigma^2 = 1 / (2 l2_weight), b = 1 / l1_weight."""
    model = MultiStageVAE(SMALL)
    kick(model)
    guide = model.default_guide()
    x = grey(5)
    l2_weight, l1_weight = 2.0, 0.5
    sigma, b = math.sqrt(1 / (2 * l2_weight)), 1 / l1_weight

    def raw(target):  # inverse of softplus(raw) + 1e-3
        return math.log(math.expm1(target - 1e-3))

    with torch.no_grad():
        model.raw_coarse_scale.fill_(raw(sigma))
        model.raw_scale.fill_(raw(b))
    torch.manual_seed(1)
    paper = MultiStage(l2_weight=l2_weight, l1_weight=l1_weight).per_datapoint(model, guide, x)
    torch.manual_seed(1)
    likelihood_form = Stepwise().per_datapoint(model, guide, x)
    constant = 64 * (0.5 * math.log(2 * math.pi * sigma**2) + math.log(2 * b))
    assert torch.allclose(paper - likelihood_form, torch.full_like(paper, constant), rtol=1e-10)


def test_importance_sampled_log_likelihood_in_bits_per_dim():
    torch.manual_seed(0)
    model = MultiStageVAE(SMALL)
    guide = model.default_guide()
    x = (torch.randint(0, 256, (6, 1, 8, 8)) + torch.rand(6, 1, 8, 8)) / 256
    estimate = log_likelihood(model, guide, x, k=64)
    assert torch.isfinite(estimate.per_datapoint).all()
    bpd = bits_per_dim(estimate.per_datapoint, 64)
    by_hand = [(-(lp.item() - 64 * math.log(256))) / (64 * math.log(2)) for lp in estimate.per_datapoint]
    assert bpd.tolist() == pytest.approx(by_hand, rel=1e-12)


def test_a_few_steps_of_the_papers_objective_lower_its_loss():
    torch.manual_seed(0)
    model = MultiStageVAE(SMALL)
    guide = model.default_guide()
    # Four prototypes plus a little noise: structure to learn (uniform noise is already fit by 0.5).
    x = (grey(4)[torch.arange(32) % 4] + 0.05 * torch.randn(32, 1, 8, 8)).clamp(0, 1)
    objective = MultiStage(num_particles=2)
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-2)
    torch.manual_seed(7)
    before = objective.loss(model, guide, x)
    for _ in range(30):
        opt.zero_grad()
        objective.differentiable_loss(model, guide, x).backward()
        opt.step()
    torch.manual_seed(7)
    assert objective.loss(model, guide, x) < before - 1.0


def test_image_sizes_the_first_stage_cannot_produce():
    with pytest.raises(ConfigError, match=r"multiples of 4.*got 30x30.*fewer"):
        MultiStageVAE(SMALL, x_shape=(1, 30, 30))
    with pytest.raises(ConfigError, match=r"image data \(C, H, W\)"):
        MultiStageVAE(SMALL, x_shape=(64,))
    with pytest.raises(ConfigError, match="stages"):
        MultiStageVAE(SMALL, stages=3)
    model = MultiStageVAE(SMALL)
    with pytest.raises(DataError, match=r"x_shape=\(1, 28, 28\)"):
        MultiStage().loss(model, model.default_guide(), torch.rand(2, 1, 28, 28))


def test_multistage_objective_refuses_one_stage_models():
    one = MultiStageVAE(SMALL, stages=1)
    with pytest.raises(ConfigError, match="carries 0.*stages=2"):
        MultiStage().loss(one, one.default_guide(), grey(2))
