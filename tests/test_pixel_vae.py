"""PixelVAE against exact truths: the decoder's autoregressive property (autograd), its normalization
(enumeration of every binary image), log p(x) by quadrature, the ELBO's analytic KL against Monte
Carlo, pixel-by-pixel sampling against the model's own probabilities, training, and bad input."""

import itertools
import math

import pytest
import torch
from pyro import poutine
from torch.autograd.functional import jacobian

from tests.conftest import binary_batch, randomize
from vaezoo import ELBO, ConfigError, DataError, fit
from vaezoo.analysis import prior_samples, reconstructions
from vaezoo.distributions import bernoulli
from vaezoo.guides import AmortizedNormal, BottomUpGuide
from vaezoo.inference import log_likelihood
from vaezoo.inference.traces import run_pair
from vaezoo.models import PixelVAE
from vaezoo.nets import PixelCNN

# Images small enough to enumerate: no upsampling steps, so any side works.
TINY = {"z_dim": 2, "latent_channels": 2, "upsample_channels": (), "condition_channels": 3, "channels": 6,
        "kernel_size": 3, "prior_hidden": 8}


def tiny(side_h: int, side_w: int, **kw) -> PixelVAE:
    """A small model with generic weights; tests using it run in float64 (the ``float64`` fixture)."""
    model = PixelVAE({**TINY, "x_shape": (1, side_h, side_w), **kw})
    randomize(model, seed=kw.get("layers", 0))  # generic weights: no accidental zeros or symmetries
    return model


def latent(model: PixelVAE, n: int = 1) -> torch.Tensor:
    """A draw of whatever x is decoded from: z (one level) or the latent map z1 (two)."""
    z = model.z_dist(model.example_x(n)).sample()
    return z if model.config.levels == 1 else model.z1_dist(z).sample()


def all_images(h: int, w: int) -> torch.Tensor:
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=h * w)), dtype=torch.double)
    return bits.reshape(-1, 1, h, w)


@pytest.mark.parametrize("layers", [1, 3])
def test_logits_at_a_pixel_ignore_that_pixel_and_later_ones(layers, float64):
    torch.manual_seed(0)
    model = tiny(4, 5, layers=layers)
    d = model.x_dist(latent(model))
    x = binary_batch(1, (1, 4, 5)).double()
    jac = jacobian(lambda v: d.logits(v)[0, 0], x)[..., 0, 0, :, :]  # (H, W, H, W)
    dep = (jac != 0).reshape(20, 20)
    assert not dep.triu().any(), "a pixel's logit depends on itself or a later pixel"
    assert dep[1:].any(1).all(), "every pixel after the first reads some earlier pixel"


def test_without_layers_the_decoder_is_a_factorized_bernoulli(float64):
    torch.manual_seed(0)
    model = tiny(3, 4, layers=0)
    z = latent(model, 3)
    d = model.x_dist(z)
    x = binary_batch(3, (1, 3, 4)).double()
    logits = model.decoder(torch.zeros_like(x), model.upsample(z))
    assert torch.equal(d.logits(x), logits), "with no masked layers the logits must not read x"
    expected = bernoulli(logits, 3).log_prob(x)
    assert torch.allclose(d.log_prob(x), expected, rtol=0, atol=1e-12)
    assert model.decoder.field.size == 0


@pytest.mark.parametrize(("levels", "layers"), [(1, 1), (1, 3), (2, 2)])
def test_p_x_given_z_sums_to_one_over_all_images(levels, layers, float64):
    torch.manual_seed(1)
    model = tiny(3, 3, levels=levels, layers=layers)
    z = latent(model, 2)  # two different z: each conditional sums to one
    images = all_images(3, 3)  # 512
    log_p = model.x_dist(z.unsqueeze(1)).log_prob(images)  # (2, 512)
    assert log_p.shape == (2, 512)
    total = torch.logsumexp(log_p, dim=1).exp()
    assert torch.allclose(total, torch.ones(2, dtype=torch.double), rtol=0, atol=1e-12), total
    # Not trivially uniform: the decoder does tell images apart.
    assert log_p.std(1).min() > 0.1


def test_importance_sampling_matches_log_p_x_by_quadrature(float64):
    torch.manual_seed(2)
    model = tiny(2, 3, layers=2, z_dim=1)
    guide = model.default_guide()
    x = all_images(2, 3)[[0, 13, 42, 63]]
    grid = torch.linspace(-8, 8, 801, dtype=torch.double)[:, None]  # z_dim = 1
    step = grid[1, 0] - grid[0, 0]
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(grid)
    log_joint = model.x_dist(grid[:, None]).log_prob(all_images(2, 3)) + log_prior  # (grid, 64)
    log_px = torch.logsumexp(log_joint, 0) + step.log()
    assert abs(log_px.exp().sum().item() - 1) < 1e-9, "quadrature: p(x) must sum to one over all 64 images"
    truth = log_px[[0, 13, 42, 63]]
    # A proposal wider than the prior, N(0, 1.5^2) whatever x: bounded weights, so the delta-method
    # s.e. is trustworthy (an untrained encoder's narrow q gives heavy-tailed weights, and then
    # estimates sat 1.5 s.e. below the truth on average). Over 10 seeds the errors here had mean
    # 0.1 s.e. and spread 1.05 s.e.
    with torch.no_grad():
        guide.head.weight.zero_()
        guide.head.bias.copy_(torch.tensor([0.0, math.log(math.expm1(1.5))]))
    est = log_likelihood(model, guide, x, k=1000)
    err = (est.per_datapoint - truth).abs()
    assert (err < 4 * est.mc_stderr).all(), (est.per_datapoint, truth, est.mc_stderr)


@pytest.mark.parametrize("levels", [1, 2])
def test_analytic_kl_elbo_equals_monte_carlo_elbo(levels, float64):
    torch.manual_seed(3)
    model = tiny(4, 4, levels=levels, layers=2)
    guide = model.default_guide()
    randomize(guide, seed=1)
    x = binary_batch(3, (1, 4, 4)).double()
    k = 4000
    analytic = ELBO(analytic_kl=True).particle_terms(run_pair(model, guide, x, k))
    mc = ELBO(analytic_kl=False).particle_terms(run_pair(model, guide, x, k))
    se = (analytic.var(0) / k + mc.var(0) / k).sqrt()
    assert ((analytic.mean(0) - mc.mean(0)).abs() < 4 * se).all(), (analytic.mean(0), mc.mean(0), se)


def test_drawn_images_follow_the_model_joint(float64):
    torch.manual_seed(4)
    model = tiny(2, 2, layers=2)
    d = model.x_dist(latent(model))  # batch (1,)
    n = 20000
    x = d.sample((n,))[:, 0]  # (n, 1, 2, 2)
    images = all_images(2, 2)
    p = d.log_prob(images).exp()[:]  # (16,)
    assert abs(p.sum().item() - 1) < 1e-12
    index = (x.flatten(1) * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.double)).sum(1).long()
    freq = torch.bincount(index, minlength=16).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 4 * se).all(), (freq, p)


@pytest.mark.parametrize(("layers", "kernel_size"), [(1, 3), (2, 5), (4, 3)])
def test_each_pixel_is_drawn_with_its_conditional_probability(layers, kernel_size, float64):
    # The pixel loop reads a window around each pixel; its probabilities must be a full pass's.
    torch.manual_seed(5)
    model = tiny(7, 9, layers=layers, kernel_size=kernel_size)
    d = model.x_dist(latent(model, 3))
    x, probs = d.sample_with_probs()
    assert torch.allclose(probs, torch.sigmoid(d.logits(x)), rtol=0, atol=1e-12)
    assert ((x == 0) | (x == 1)).all()


@pytest.mark.parametrize("levels", [1, 2])
def test_default_guide_sites_and_samples(levels):
    model = PixelVAE(x_shape=(1, 8, 8), levels=levels, z_dim=3, upsample_channels=(4, 4), layers=1,
                     channels=4, condition_channels=2)
    guide = model.default_guide()
    assert isinstance(guide, AmortizedNormal if levels == 1 else BottomUpGuide)
    x = binary_batch(5, (1, 8, 8))
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    want = {"z": (3,)} if levels == 1 else {"z1": (4, 2, 2), "z2": (3,)}
    for name, shape in want.items():
        assert m.nodes[name]["fn"].event_shape == shape and g.nodes[name]["value"].shape == (5, *shape)
    assert model.layer_sites == tuple(sorted(want))
    samples = prior_samples(model, 4, mean=False)
    assert samples.shape == (4, 1, 8, 8) and ((samples == 0) | (samples == 1)).all()
    probs = prior_samples(model, 4)
    assert ((probs > 0) & (probs < 1)).all()
    assert reconstructions(model, guide, x).shape == x.shape


@pytest.mark.parametrize("levels", [1, 2])
def test_training_raises_the_bound(levels):
    torch.manual_seed(0)
    prototypes = binary_batch(4, shape=(1, 8, 8), seed=3)
    data = prototypes[torch.randint(0, 4, (128,))]
    model = PixelVAE(x_shape=(1, 8, 8), levels=levels, z_dim=4, upsample_channels=(8,), layers=2,
                     kernel_size=3, channels=8, condition_channels=4, latent_channels=2, prior_hidden=16)
    guide = model.default_guide()
    before = ELBO(num_particles=10).bound(model, guide, data).mean().item()
    fit(model, guide, data, ELBO(), epochs=20, batch_size=32, lr=1e-2, progress=False)
    after = ELBO(num_particles=10).bound(model, guide, data).mean().item()
    # 64 pixels start near 64 log 2 = 44 nats (measured: -46, -48); four prototypes are worth
    # log 4 = 1.4 nats; 80 steps reach about -18 (one level) and -22 (two).
    assert after > before + 15, (before, after)


def test_receptive_field_grows_with_layers():
    sizes = [PixelVAE(layers=n, kernel_size=5).decoder.field.up for n in (0, 1, 3, 6)]
    assert sizes == [0, 2, 6, 12]


@pytest.mark.parametrize(
    ("x", "message"),
    [
        # PixelVAE has no real-valued likelihood, so the message must not point to one
        (torch.full((4, 1, 28, 28), 0.5), r"needs x in \{0, 1\}; binarize [^;]*\)$"),
        (torch.zeros(4, 784), r"expects x of shape \(batch, 1, 28, 28\), got \(4, 784\)"),
    ],
)
def test_bad_data_is_named(x, message):
    model = PixelVAE(layers=1, channels=4)
    with pytest.raises(DataError, match=message):
        ELBO().loss(model, model.default_guide(), x)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"x_shape": (1, 30, 30)}, r"by 2\^2 = 4 .* multiples of 4; got 30x30.*fewer upsample_channels"),
        ({"x_shape": (784,)}, r"needs image data \(C, H, W\)"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"levels": 3}, r"'levels' = 3 is not allowed"),
        ({"layers": -1}, r"'layers' = -1 is not allowed"),
    ],
)
def test_bad_config_is_named(config, message):
    with pytest.raises(ConfigError, match=message):
        PixelVAE(**config)


def test_a_first_layer_that_would_see_its_own_pixel_is_refused():
    with pytest.raises(ConfigError, match=r"mask must be 'A'.*see that pixel"):
        PixelCNN(1, 4, 2, 3, 1, mask_types=("B", "B"))


def test_log_p_x_given_z_is_exact_in_float32_too():
    # The default precision path (no .double()): the same enumeration, to float tolerance.
    torch.manual_seed(6)
    model = PixelVAE({**TINY, "x_shape": (1, 3, 3), "layers": 2})
    z = model.z_dist(model.example_x(1)).sample()
    total = torch.logsumexp(model.x_dist(z).log_prob(all_images(3, 3).float()), 0).exp()
    assert math.isclose(total.item(), 1.0, abs_tol=1e-5)
