"""NVAE: residual cells, spectral norms by power iteration, residual-normal posteriors, KL balancing, the
nvae_elbo objective, training, checkpoints and bad image sizes."""

import math
import subprocess
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from tests.conftest import binary_batch
from vaezoo import ELBO, ConfigError, DataError, checkpoint, fit, log_likelihood
from vaezoo.guides.nvae import residual_kl, residual_normal
from vaezoo.inference import IWAE, NVAEObjective, balance_coefficients, group_kls, run_pair
from vaezoo.inference.fit import parameters
from vaezoo.nets import (
    EncoderCell,
    GenerativeCell,
    SpectralNorms,
    SqueezeExcitation,
    evaluating,
    spectral_penalty,
)
from vaezoo.registry import build_model

SHAPE = (1, 12, 12)
# canvas 16 -> bottom scale 8 x 8 -> top 4 x 4; four groups of 3 latent channels.
SMALL = dict(x_shape=SHAPE, canvas=16, channels=4, preprocess_blocks=1, latent_channels=3, expansion=2)


def small(**kw):
    return build_model("nvae", {**SMALL, **kw})


def prototype_data(n=128, seed=3):
    prototypes = binary_batch(4, SHAPE, seed=seed)
    return prototypes[torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))]


# ---- cells ----------------------------------------------------------------------------------------


def test_squeeze_excitation_gates_channels():
    se = SqueezeExcitation(8)
    x = torch.randn(2, 3, 8, 5, 5)
    assert se(x).shape == x.shape
    gate = se(x) / x
    assert ((gate > 0) & (gate < 1)).all()
    # one gate per image and channel, constant over positions
    torch.testing.assert_close(gate, gate[..., :1, :1].expand_as(gate))
    with torch.no_grad():
        se.excite.weight.zero_()
        se.excite.bias.zero_()
    torch.testing.assert_close(se(x), 0.5 * x)


def test_cell_shapes_and_depthwise_convolution():
    x = torch.randn(3, 8, 8, 8)
    assert EncoderCell(8, 8)(x).shape == (3, 8, 8, 8)
    assert EncoderCell(8, 16, stride=2)(x).shape == (3, 16, 4, 4)
    assert GenerativeCell(8, 8, expansion=6)(x).shape == (3, 8, 8, 8)
    cell = GenerativeCell(8, 4, upsample=2, expansion=6)
    assert cell(x).shape == (3, 4, 16, 16)
    depthwise = [m for m in cell.branch if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 1
    (dw,) = depthwise
    assert dw.groups == dw.in_channels == dw.out_channels == 24 and dw.weight.shape == (24, 1, 5, 5)
    expand = [m for m in cell.branch if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(m.in_channels, m.out_channels) for m in expand] == [(4, 24), (24, 4)]
    # With a zero branch a cell is its skip: the identity when nothing is resampled.
    same = GenerativeCell(8, 8, branch_scale=0.0)
    torch.testing.assert_close(same(x), x)
    with pytest.raises(ConfigError, match="resamples"):
        EncoderCell(8, 8, stride=3)


# ---- spectral norms -------------------------------------------------------------------------------


def test_power_iteration_converges_to_the_largest_singular_value(float64):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Conv2d(5, 5, 5, groups=5), nn.Linear(7, 4))
    norms = SpectralNorms(net)
    assert len(norms) == 3 and set(norms.state_dict()) == {f"{a}{i}" for a in "uv" for i in range(3)}
    sigma = norms.estimates(steps=300)
    for layer, s in zip(net, sigma, strict=True):
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        torch.testing.assert_close(s, torch.linalg.matrix_norm(w, ord=2), rtol=1e-8, atol=0)
    # d sigma / dW = u1 v1^T at the top singular pair (sign-free), which the estimate's gradient gives.
    layer = net[0]
    s = SpectralNorms(nn.Sequential(layer)).estimates(steps=300)[0]
    (grad,) = torch.autograd.grad(s, layer.weight)
    u, _, vh = torch.linalg.svd(layer.weight.detach().reshape(5, -1))
    torch.testing.assert_close(grad.reshape(5, -1), torch.outer(u[:, 0], vh[0]), rtol=0, atol=1e-8)


def test_spectral_penalty_finds_the_estimators_of_model_and_guide():
    model = small()
    guide = model.default_guide()
    convs = [m for m in (*model.modules(), *guide.modules()) if isinstance(m, nn.Conv2d)]
    assert len(model.spectral) + len(guide.spectral) == len(convs)
    assert "spectral.u0" in model.state_dict() and "spectral.u0" in guide.state_dict()
    with torch.no_grad():
        total = spectral_penalty(model, guide, steps=0)
        parts = torch.cat([model.spectral.estimates(0), guide.spectral.estimates(0)]).sum()
    torch.testing.assert_close(total, parts)
    assert spectral_penalty(nn.Linear(2, 2)) is None


# ---- residual normal ------------------------------------------------------------------------------


def test_residual_normal_kl_is_eq_2_and_the_normal_kl(float64):
    g = torch.Generator().manual_seed(0)
    mu_p, dmu = torch.randn(50, generator=g), torch.randn(50, generator=g)
    sigma_p, dsigma = torch.rand(50, generator=g) + 0.1, torch.rand(50, generator=g) * 3 + 0.05
    loc, scale = residual_normal(mu_p, sigma_p, dmu, dsigma)
    want = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(mu_p, sigma_p)
    )
    torch.testing.assert_close(residual_kl(dmu, dsigma, sigma_p), want, rtol=1e-12, atol=1e-12)
    pyro_kl = torch.distributions.kl_divergence(dist.Normal(loc, scale), dist.Normal(mu_p, sigma_p))
    torch.testing.assert_close(pyro_kl, want, rtol=1e-12, atol=1e-12)
    # by hand: dmu = 1, sigma_p = 2, dsigma = 1 -> 1/8; dmu = 0, dsigma = e -> (e^2 - 3) / 2
    one = torch.ones(())
    assert residual_kl(one, one, 2 * one).item() == pytest.approx(0.125, abs=1e-15)
    assert residual_kl(0 * one, math.e * one, one).item() == pytest.approx((math.e**2 - 3) / 2, abs=1e-14)


def test_zero_encoder_output_puts_q_on_the_prior():
    model = small()
    guide = model.default_guide()
    with torch.no_grad():
        for sampler in guide.sampler:
            conv = sampler.net[-1]
            conv.weight.zero_()
            conv.bias.zero_()
    x = binary_batch(5, SHAPE)
    with evaluating(model, guide):
        pair = run_pair(model, guide, x, num_particles=2)
    for name in pair.latent:
        q, p = pair.guide_sites[name]["fn"].base_dist, pair.model_sites[name]["fn"].base_dist
        torch.testing.assert_close(q.loc, p.loc.expand_as(q.loc), rtol=0, atol=0)
        torch.testing.assert_close(q.scale, p.scale.expand_as(q.scale), rtol=0, atol=0)
        torch.testing.assert_close(pair.analytic_kl(name), torch.zeros(2, 5))


def test_model_replay_reuses_the_guides_path_with_the_same_values():
    model = small()
    guide = model.default_guide()
    x = binary_batch(4, SHAPE)
    with evaluating(model, guide):
        pair = run_pair(model, guide, x, num_particles=3)
        values = {n: pair.guide_sites[n]["value"] for n in pair.latent}
        with pyro_plate_like(pair):
            fresh = poutine.trace(poutine.condition(model, data=values)).get_trace(x)
    for name in (*pair.latent, "x"):
        a, b = pair.model_sites[name], fresh.nodes[name]
        torch.testing.assert_close(a["fn"].log_prob(a["value"]), b["fn"].log_prob(b["value"]), rtol=0, atol=0)


def pyro_plate_like(pair):
    return pyro.plate("particles", pair.num_particles, dim=-pair.plate_dims)


# ---- model and guide under the estimators ---------------------------------------------------------


def test_sites_are_lattices_and_every_estimator_runs():
    model = small()
    guide = model.default_guide()
    x = binary_batch(6, SHAPE)
    pair = run_pair(model, guide, x, num_particles=3)
    assert pair.latent == ["z4", "z3", "z2", "z1"] and model.layer_sites == ("z1", "z2", "z3", "z4")
    for name, side in (("z1", 8), ("z2", 8), ("z3", 4), ("z4", 4)):
        assert pair.guide_sites[name]["fn"].event_shape == (3, side, side)
        assert pair.guide_sites[name]["value"].shape == (3, 6, 3, side, side)
    assert pair.model_sites["x"]["fn"].event_shape == SHAPE
    with evaluating(model, guide):
        for bound in (ELBO().bound(model, guide, x), IWAE(k=4).bound(model, guide, x)):
            assert bound.shape == (6,) and torch.isfinite(bound).all()
        est = log_likelihood(model, guide, x, k=16)
    assert est.per_datapoint.shape == (6,) and torch.isfinite(est.per_datapoint).all()
    assert est.mean < 0


def test_guide_shares_the_model_top_down_path_without_owning_it():
    model = small()
    guide = model.default_guide()
    assert guide.model is model
    model_ids, guide_ids = {id(p) for p in model.parameters()}, {id(p) for p in guide.parameters()}
    assert not model_ids & guide_ids
    assert len(parameters(model, guide)) == len(model_ids) + len(guide_ids)
    assert not any(k.startswith("top_down") for k in guide.state_dict())


# ---- the objective --------------------------------------------------------------------------------


def test_balance_coefficients_by_hand():
    # mean |KL| per group: 2, 8, 2; sizes 2, 8, 4 -> 1, 1, 0.5, scaled to sum to 3 -> 1.2, 1.2, 0.6
    kls = torch.tensor([[[1.0, -1.0, 3.0, 3.0]], [[8.0, 8.0, 8.0, 8.0]], [[0.0, 4.0, 2.0, 2.0]]])
    sizes = torch.tensor([2.0, 8.0, 4.0])
    torch.testing.assert_close(balance_coefficients(kls, sizes, floor=0.0), torch.tensor([1.2, 1.2, 0.6]))
    # the floor is added to the mean before dividing by the size: (3, 9, 3) / (2, 8, 4)
    raw = torch.tensor([1.5, 9 / 8, 0.75])
    torch.testing.assert_close(balance_coefficients(kls, sizes, floor=1.0), 3 * raw / raw.sum())
    kls.requires_grad_(True)
    assert not balance_coefficients(kls, sizes).requires_grad


def test_objective_balances_during_warmup_and_is_the_elbo_after():
    model = small()
    guide = model.default_guide()
    x = binary_batch(6, SHAPE)
    objective = NVAEObjective(kl_warmup=2.0, spectral_lambda=0.0)
    with evaluating(model, guide):
        torch.manual_seed(3)
        got = objective.per_datapoint(model, guide, x, latent_weight=0.25)
        torch.manual_seed(3)
        pair = run_pair(model, guide, x)
        kls = group_kls(pair)
        sizes = torch.tensor([3.0 * 4 * 4, 3 * 4 * 4, 3 * 8 * 8, 3 * 8 * 8])  # z4, z3, z2, z1
        gamma = balance_coefficients(kls, sizes, 0.01)
        want = pair.log_p("x") - 0.25 * (gamma[:, None, None] * kls).sum(0)
        torch.testing.assert_close(got, want.mean(0))
        assert not torch.allclose(gamma, torch.ones(4))
        for seed in (4, 5):
            torch.manual_seed(seed)
            bound = objective.bound(model, guide, x)
            torch.manual_seed(seed)
            torch.testing.assert_close(bound, ELBO().bound(model, guide, x))
    assert objective.latent_weight(1.0) == 0.5 and objective.latent_weight(3.0) == 1.0


def test_loss_is_the_elbo_loss_plus_the_spectral_penalty():
    model = small()
    guide = model.default_guide()
    x = binary_batch(6, SHAPE)
    objective = NVAEObjective(spectral_lambda=0.5)
    torch.manual_seed(1)
    loss = objective.differentiable_loss(model, guide, x)  # progress inf: past the warm-up
    with torch.no_grad():
        penalty = 0.5 * spectral_penalty(model, guide, steps=0)
    torch.manual_seed(1)
    elbo = ELBO().differentiable_loss(model, guide, x)
    torch.testing.assert_close(loss, elbo + penalty)
    torch.manual_seed(1)
    assert objective.loss(model, guide, x) == pytest.approx(loss.item(), rel=1e-6)
    lvae = build_model("lvae", x_shape=SHAPE, z_dims=(3, 2), hidden=(8,))
    with pytest.raises(ConfigError, match="spectral_lambda"):
        objective.check_pair(lvae, lvae.default_guide(), x)
    NVAEObjective(spectral_lambda=0.0).check_pair(lvae, lvae.default_guide(), x)


# ---- training and checkpoints ---------------------------------------------------------------------


def test_a_few_epochs_raise_the_bound():
    data = prototype_data()
    model = small()
    guide = model.default_guide()

    def bound():
        torch.manual_seed(11)
        with evaluating(model, guide):
            return ELBO().bound(model, guide, data).mean().item()

    before = bound()
    fit(model, guide, data, NVAEObjective(kl_warmup=1.0), epochs=4, batch_size=32, lr=3e-3, progress=False)
    after = bound()
    # 144 pixels near log(1/2) each: about -100 nats to start; four prototypes allow a few nats. An average
    # over 128 points moves by a fraction of a nat between seeds, so a 20-nat gain cannot be chance.
    assert after > before + 20, (before, after)


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    data = prototype_data(64)

    def run(out, epochs, seed):
        torch.manual_seed(seed)  # a different initialization: resuming must overwrite all of it
        model = small()
        guide = model.default_guide()
        fit(
            model,
            guide,
            data,
            NVAEObjective(kl_warmup=1.0),
            epochs=epochs,
            batch_size=16,
            out=out,
            progress=False,
        )
        return model, guide

    straight = run(tmp_path / "a", 2, 0)
    run(tmp_path / "b", 1, 0)
    resumed = run(tmp_path / "b", 2, 7)
    for a, b in zip(straight, resumed, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    model2, guide2, objective, _ = checkpoint.restore(tmp_path / "b" / "checkpoint.pt")
    assert isinstance(objective, NVAEObjective) and guide2.model is model2
    torch.testing.assert_close(model2.spectral.u0, resumed[0].spectral.u0, rtol=0, atol=0)


# ---- bad input and the command line -------------------------------------------------------------------


def test_image_sizes_the_model_cannot_produce_are_refused():
    model = build_model("nvae")
    with pytest.raises(DataError, match=r"x_shape=\(1, 30, 30\)"):
        model(torch.zeros(2, 1, 30, 30))
    with pytest.raises(ConfigError, match=r"canvas \(--canvas\) to at least 36, a multiple of 8"):
        build_model("nvae", x_shape=(1, 36, 36))
    with pytest.raises(ConfigError, match="multiple of 16"):
        build_model("nvae", canvas=36)
    with pytest.raises(ConfigError, match=r"image data \(C, H, W\)"):
        build_model("nvae", x_shape=(784,))
    # 30 x 30 fits the 32 x 32 canvas when the model is built for it; the likelihood covers 30 x 30.
    model = build_model("nvae", x_shape=(1, 30, 30))
    x = binary_batch(2, (1, 30, 30))
    pair = run_pair(model, model.default_guide(), x)
    assert pair.model_sites["x"]["fn"].event_shape == (1, 30, 30)


def test_cli_lists_the_flags_of_model_and_objective():
    out = subprocess.run(
        [sys.executable, "-m", "vaezoo", "train", "--model", "nvae", "--objective", "nvae_elbo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--canvas",
        "--groups-per-scale",
        "--latent-channels",
        "--cells-per-group",
        "--spectral-lambda",
    ):
        assert flag in out, flag
