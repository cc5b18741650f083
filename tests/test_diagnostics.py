"""Per-layer diagnostics against cases with known answers: KL per layer, active units, PCA, layer grids."""

import math

import numpy as np
import pytest
import torch

from tests.conftest import binary_batch
from vaezoo import ELBO, ConfigError, ExactPosterior, LinearGaussian, fit
from vaezoo.analysis.diagnostics import (
    active_units,
    explained_variance,
    layer_grid,
    layer_kl,
    layer_report,
    posterior_means,
    unit_activity,
)
from vaezoo.nets import evaluating
from vaezoo.registry import build_guide, build_model

SHAPE = (1, 6, 6)


def softplus_inv(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def set_constant(linear: torch.nn.Linear, loc, scale, min_scale=1e-4):
    """Make a (loc, softplus scale) head output constants: zero weights, bias = (loc, softplus^-1(scale))."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.cat([torch.tensor(loc), softplus_inv(torch.tensor(scale) - min_scale)]))


def normal_kl(a, s, b, t):
    a, s, b, t = map(torch.tensor, (a, s, b, t))
    return (torch.log(t / s) + (s**2 + (a - b) ** 2) / (2 * t**2) - 0.5).sum().item()


def test_active_units_and_activity_of_constructed_means():
    n = 100
    signs = torch.tensor([1.0, -1.0]).repeat(n // 2)
    # unit u has posterior mean c_u * (+-1): its variance over the data is c_u^2 n / (n - 1)
    c = torch.tensor([1.0, 0.2, 0.05, 0.0])
    means = {"z1": signs[:, None] * c, "z2": signs[:, None] * torch.tensor([0.11, 0.09])}
    activity = unit_activity(means)
    torch.testing.assert_close(activity["z1"], c**2 * n / (n - 1))
    assert active_units(means) == {"z1": 2, "z2": 1}
    assert active_units(means, threshold=0.001) == {"z1": 3, "z2": 2}


def test_active_units_of_a_linear_model_that_ignores_half_its_latents():
    """Probabilistic PCA whose loading matrix has two zero columns: the exact posterior mean of those units is
    exactly 0 for every x (inactive), and the two used units vary with x."""
    model = LinearGaussian(x_shape=(6,), z_dim=4, seed=0)
    with torch.no_grad():
        model.W[:, 2:] = 0
        x = model.x_dist(torch.randn(300, 4)).sample()
    guide = ExactPosterior(model)
    means = posterior_means(model, guide, x, num_particles=2, batch_size=128)
    torch.testing.assert_close(means.mean["z"], model.posterior(x)["z"].mean)
    assert (means.mean["z"][:, 2:] == 0).all() and (means.noise_cov["z"] == 0).all()  # q's mean is exact
    assert active_units(means) == {"z": 2}


def test_monte_carlo_noise_of_conditional_posterior_means_is_not_activity():
    """Bottom-up chain with q(z1 | x) = N(0, I) for every x: E_q[z2 | x] is the same for every x (activity 0),
    but each estimate averages q(z2 | z1)'s mean over a few draws of z1, whose noise alone would spread the
    estimates over the data. The noise estimate must remove it."""
    model = build_model("markov_hvae", x_shape=SHAPE, z_dims=(3, 2), hidden=(8,))
    guide = model.default_guide()
    set_constant(guide.nets[0][-1], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    with torch.no_grad():
        guide.nets[1][-1].weight[:2].mul_(4.0)  # the loc rows: a mean that moves a lot with z1
    x = binary_batch(1, SHAPE).expand(10000, *SHAPE)
    means = posterior_means(model, guide, x, num_particles=4, batch_size=2500)
    naive = unit_activity(means.mean)["z2"]
    assert (naive > 0.05).all(), naive  # without the correction both units would count as active
    corrected = unit_activity(means)
    assert (corrected["z2"] < naive / 10).all() and active_units(means) == {"z1": 0, "z2": 0}, corrected


def test_posterior_means_of_a_flow_guide_use_its_draws_and_remove_their_noise():
    """An IAF guide has no closed-form mean, so its draws stand in for it. With the encoder's head
    zeroed, q(z | x) is the same flow for every x (activity 0): the spread of the draws over the data
    must be taken as noise, not activity, while the naive spread of the estimates exceeds the threshold."""
    model = build_model("vae", x_shape=SHAPE, z_dim=3, hidden=(8,))
    guide = build_guide("iaf", model, hidden=(8,), made_hidden=(8,))
    with torch.no_grad():
        guide.head.weight.zero_()
    x = binary_batch(2000, SHAPE)
    means = posterior_means(model, guide, x, num_particles=4, batch_size=500)
    naive = unit_activity(means.mean)["z"]
    assert (naive > 0.05).all(), naive
    # the noise-corrected activity is an estimate of 0 whose error is about naive * sqrt(2 / n)
    corrected = unit_activity(means)["z"]
    assert (corrected < 4 * naive * math.sqrt(2 / 2000)).all(), (corrected, naive)
    assert active_units(means) == {"z": 0}


def test_layer_kl_analytic_path_equals_the_closed_form():
    model = build_model("vae", x_shape=SHAPE, z_dim=3, hidden=(8,))
    guide = model.default_guide()
    x = binary_batch(7, SHAPE)
    q = guide.site_dists(x)["z"].base_dist
    want = 0.5 * (q.loc**2 + q.scale**2 - 1 - 2 * q.scale.log()).sum(-1)
    got = layer_kl(model, guide, x, batch_size=3)["z"]
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=1e-5)


def test_layer_kl_of_a_constructed_hierarchy():
    """HVAE with constant networks: q(z1) = N(a1, s1), q(z2 | .) = N(a2, s2), p(z2) = N(0, 1),
    p(z1 | z2) = N(b1, t1). The bottom-up guide samples z1 first, so z1's KL must be estimated by Monte
    Carlo (checked within 4 standard errors) while z2's is taken in closed form (checked exactly)."""
    model = build_model("hvae", x_shape=SHAPE, z_dims=(2, 1), hidden=(4,))
    guide = model.default_guide()
    a1, s1, a2, s2 = [0.5, -1.0], [0.7, 1.3], [1.5], [0.4]
    b1, t1 = [0.0, 1.0], [1.1, 0.6]
    set_constant(guide.nets[0][-1], a1, s1)
    set_constant(guide.nets[1][-1], a2, s2)
    set_constant(model.top_down[0][-1], b1, t1)
    x = binary_batch(1, SHAPE).expand(2000, *SHAPE)
    kl = layer_kl(model, guide, x, num_particles=2)
    torch.testing.assert_close(
        kl["z2"], torch.full((2000,), normal_kl(a2, s2, [0.0], [1.0])), atol=1e-5, rtol=0
    )
    z1 = kl["z1"].double()
    assert z1.std() > 0.1  # really Monte Carlo
    se = z1.std() / math.sqrt(len(z1))
    assert abs(z1.mean().item() - normal_kl(a1, s1, b1, t1)) < 4 * se, (
        z1.mean(),
        normal_kl(a1, s1, b1, t1),
        se,
    )


def test_layer_kl_monte_carlo_path_against_exact_posterior_of_probabilistic_pca():
    torch.set_default_dtype(torch.float64)
    try:
        model = LinearGaussian(x_shape=(5,), z_dim=2, seed=1)
        x = torch.randn(1, 5).expand(4000, 5)
        post = model.posterior(x[:1])["z"]
        m, S = post.mean[0], post.covariance_matrix[0]
        exact = 0.5 * (torch.trace(S) + m @ m - 2 - torch.logdet(S)).item()
        kl = layer_kl(model, ExactPosterior(model), x)["z"]  # MVN vs Normal: no closed form registered
        se = (kl.std() / math.sqrt(len(kl))).item()
        assert se > 0 and abs(kl.mean().item() - exact) < 4 * se, (kl.mean(), exact, se)
    finally:
        torch.set_default_dtype(torch.float32)


def test_explained_variance_matches_an_independent_pca():
    g = torch.Generator().manual_seed(0)
    means = {"a": torch.randn(200, 4, generator=g) @ torch.randn(4, 4, generator=g)}
    means["rank1"] = torch.randn(50, 1, generator=g) * torch.tensor([[1.0, -2.0, 0.5]])
    ratios = explained_variance(means)
    eig = np.sort(np.linalg.eigvalsh(np.cov(means["a"].numpy().T)))[::-1]
    np.testing.assert_allclose(ratios["a"].numpy(), eig / eig.sum(), rtol=1e-5)
    torch.testing.assert_close(ratios["rank1"], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_layer_report_covers_every_layer():
    model = build_model("lvae", x_shape=SHAPE, z_dims=(4, 3, 2), hidden=(8,))
    report = layer_report(model, model.default_guide(), binary_batch(30, SHAPE))
    assert list(report.kl) == ["z1", "z2", "z3"] and report.units == {"z1": 4, "z2": 3, "z3": 2}
    assert all(0 <= report.active[n] <= report.units[n] for n in report.kl)
    assert len(str(report).splitlines()) == 4


def markov_pair():
    model = build_model("markov_hvae", x_shape=SHAPE, z_dims=(3, 2), hidden=(8,))
    return model, model.default_guide()


def guide_means(guide, x):
    """q's means propagated bottom-up by hand: z1 = mean of q(z1 | x), z2 = mean of q(z2 | z1)."""
    loc1 = guide.nets[0](x.flatten(1)).chunk(2, -1)[0]
    return loc1, guide.nets[1](loc1).chunk(2, -1)[0]


def test_layer_grid_holds_the_other_layers_at_the_posterior_mean():
    model, guide = markov_pair()
    x, n = binary_batch(3, SHAPE), 5
    with torch.no_grad(), evaluating(model, guide):
        z1, _ = guide_means(guide, x)
        recon = model.x_dist([z1]).mean
    # x depends on z2 only through z1: resampling z2 with z1 fixed cannot change the images ...
    grid = layer_grid(model, guide, x, 2, n)
    assert grid.shape == (3 * n, *SHAPE)
    torch.testing.assert_close(grid, recon.repeat_interleave(n, 0))
    # ... unless z1 follows z2's new value, or z1 itself is resampled.
    for kw in ({"layer": 2, "below": "prior"}, {"layer": "z2", "below": "prior_mean"}, {"layer": 1}):
        rows = layer_grid(model, guide, x, n=n, **kw).reshape(3, n, -1)
        assert (rows - rows[:, :1]).abs().amax() > 1e-3, kw
    assert layer_grid(model, guide, x, 1, n, fix="sample").shape == (3 * n, *SHAPE)


def test_layer_grid_traversal_moves_one_unit_along_its_conditional_prior():
    model, guide = markov_pair()
    x, n, span, unit = binary_batch(2, SHAPE), 4, 2.0, 1
    grid = layer_grid(model, guide, x, 1, n, mode="traverse", unit=unit, span=span)
    with torch.no_grad(), evaluating(model, guide):
        z1, z2 = guide_means(guide, x)
        loc, scale = model.prior_loc_scale(0, [z2])
        z = z1.repeat_interleave(n, 0)
        t = torch.linspace(-span, span, n).repeat(2)
        z[:, unit] = loc.repeat_interleave(n, 0)[:, unit] + t * scale.repeat_interleave(n, 0)[:, unit]
        want = model.x_dist([z]).mean
    torch.testing.assert_close(grid, want)


def test_layer_grid_names_an_unknown_layer():
    model, guide = markov_pair()
    with pytest.raises(ConfigError, match=r"unknown layer 3; give 1..2 .* \['z1', 'z2'\]"):
        layer_grid(model, guide, binary_batch(1, SHAPE), 3)


def cut_inputs(weight: torch.Tensor, columns: list[int]) -> None:
    """Zero some input columns of a weight and keep them zero under training (zero gradient, so Adam
    leaves them at 0)."""
    mask = torch.ones_like(weight)
    mask[:, columns] = 0
    with torch.no_grad():
        weight.mul_(mask)
    weight.register_hook(lambda grad: grad * mask)


def test_a_layer_the_generator_ignores_becomes_inactive_under_training():
    """A VLAE whose generator cuts z2 off (zero input weights of u_2, kept zero). The guide starts with every
    unit active (rescaled heads, activity exactly 1); in training only the KL term acts on z2, which must end
    inactive, while z1 carries the data and stays active.

    (Units cut off inside a layer whose other units are used decay far more slowly, because the guide's
    shared features keep moving under the used units' gradients; the exact case above covers that count.)
    """
    prototypes = binary_batch(8, SHAPE, seed=3)
    data = prototypes[torch.randint(0, 8, (256,), generator=torch.Generator().manual_seed(3))]
    model = build_model("vlae", x_shape=SHAPE, z_dims=(2, 2), hidden=(32,))
    cut_inputs(model.up[-1][0].weight, [0, 1])
    guide = model.default_guide()
    start = unit_activity(posterior_means(model, guide, data))
    with torch.no_grad():
        for head, name in zip(guide.heads, ("z1", "z2"), strict=True):
            head.weight[: len(start[name])] /= start[name].sqrt()[:, None]
    assert active_units(posterior_means(model, guide, data)) == {"z1": 2, "z2": 2}
    fit(model, guide, data, ELBO(), epochs=30, batch_size=32, lr=1e-2, progress=False)
    # Adam's steps do not shrink with the gradient: a smaller final rate lowers the noise floor that weights
    # whose optimum is 0 settle at
    fit(model, guide, data, ELBO(), epochs=10, batch_size=32, lr=1e-3, progress=False)
    activity = unit_activity(posterior_means(model, guide, data))
    assert active_units(posterior_means(model, guide, data)) == {"z1": 2, "z2": 0}, activity
