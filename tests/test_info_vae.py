"""InfoVAE / MMD-VAE against truth: the unbiased MMD^2 against a hand double sum, ~0 between two
samples of one distribution, the closed form for Gaussian kernels between N(0, I) and N(mu, I) and a
quadrature for the inverse multiquadratic one; the objective's parts and its plain-ELBO bound."""

import math

import pytest
import torch

from vaezoo import ConfigError
from vaezoo.inference import ELBO, InfoVAE, kernel_matrix, mmd_unbiased, run_pair
from vaezoo.registry import build_guide, build_model, build_objective

VAE = {"x_shape": (1, 6, 6), "z_dim": 3, "hidden": (8,)}


def small_vae():
    torch.manual_seed(0)
    model = build_model("vae", VAE)
    x = torch.bernoulli(torch.full_like(model.example_x(6), 0.4))
    return model, build_guide("amortized", model), x


def hand_kernel(a, b, kernel, s):
    sq = sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))
    l2 = len(a) * s * s
    return math.exp(-sq / (2 * l2)) if kernel == "gaussian" else 2 * l2 / (2 * l2 + sq)


@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_unbiased_mmd_matches_a_hand_double_sum(kernel):
    torch.manual_seed(0)
    a = torch.randn(4, 3, dtype=torch.float64)
    b = torch.randn(5, 3, dtype=torch.float64) + 0.5
    s = 0.7
    rows_a, rows_b = a.tolist(), b.tolist()
    aa = sum(
        hand_kernel(p, q, kernel, s) for i, p in enumerate(rows_a) for j, q in enumerate(rows_a) if i != j
    )
    bb = sum(
        hand_kernel(p, q, kernel, s) for i, p in enumerate(rows_b) for j, q in enumerate(rows_b) if i != j
    )
    ab = sum(hand_kernel(p, q, kernel, s) for p in rows_a for q in rows_b)
    truth = aa / (4 * 3) + bb / (5 * 4) - 2 * ab / (4 * 5)
    assert mmd_unbiased(a, b, kernel, s).item() == pytest.approx(truth, abs=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_mmd_between_samples_of_one_distribution_averages_zero(kernel):
    torch.manual_seed(1)
    reps, n = 2000, 16
    a = torch.randn(reps, n, 2, dtype=torch.float64)
    b = torch.randn(reps, n, 2, dtype=torch.float64)
    values = mmd_unbiased(a, b, kernel, 1.0)
    assert values.mean().abs() < 4 * values.std() / math.sqrt(reps)
    assert (values < 0).any()  # an unbiased estimate of 0 must sometimes be negative


def gaussian_closed_form(mu: torch.Tensor, s: float) -> float:
    """MMD^2(N(0, I_D), N(mu, I_D)) for k = exp(-|a - b|^2 / (2 l^2)), l^2 = D s^2: with a - a' ~ N(0, 2I)
    and a - b ~ N(-mu, 2I), E k = (l^2 / (l^2 + 2))^(D/2) exp(-|m|^2 / (2 (l^2 + 2))) for a difference of
    mean m, so MMD^2 = 2 (l^2 / (l^2 + 2))^(D/2) (1 - exp(-|mu|^2 / (2 (l^2 + 2))))."""
    d = mu.numel()
    l2 = d * s * s
    return 2 * (l2 / (l2 + 2)) ** (d / 2) * (1 - math.exp(-mu.pow(2).sum().item() / (2 * (l2 + 2))))


def imq_quadrature(mu: float, s: float) -> float:
    """The same MMD^2 in one dimension for the inverse multiquadratic kernel, by quadrature of
    E k(u) over the difference u ~ N(m, 2)."""
    c = 2 * s * s
    u = torch.linspace(-40, 40, 400001, dtype=torch.float64)

    def expect(m):
        density = torch.exp(-((u - m) ** 2) / 4) / math.sqrt(4 * math.pi)
        return torch.trapezoid(density * c / (c + u**2), u).item()

    return 2 * (expect(0.0) - expect(mu))


@pytest.mark.parametrize(("mu", "s"), [((0.8,), 1.0), ((1.5,), 0.5), ((1.0, -0.5), 0.8)])
def test_gaussian_kernel_mmd_matches_its_closed_form(mu, s):
    torch.manual_seed(2)
    mu = torch.tensor(mu, dtype=torch.float64)
    reps, n = 400, 64
    a = torch.randn(reps, n, mu.numel(), dtype=torch.float64)
    b = torch.randn(reps, n, mu.numel(), dtype=torch.float64) + mu
    values = mmd_unbiased(a, b, "gaussian", s)
    stderr = values.std().item() / math.sqrt(reps)
    assert values.mean().item() == pytest.approx(gaussian_closed_form(mu, s), abs=4 * stderr)


def test_imq_kernel_mmd_matches_quadrature():
    torch.manual_seed(3)
    reps, n, mu, s = 400, 64, 1.2, 0.9
    a = torch.randn(reps, n, 1, dtype=torch.float64)
    b = torch.randn(reps, n, 1, dtype=torch.float64) + mu
    values = mmd_unbiased(a, b, "imq", s)
    stderr = values.std().item() / math.sqrt(reps)
    assert values.mean().item() == pytest.approx(imq_quadrature(mu, s), abs=4 * stderr)


def test_kernel_is_one_on_the_diagonal_and_symmetric():
    a = torch.randn(5, 3)
    for kernel in ("gaussian", "imq"):
        g = kernel_matrix(a, a, kernel, 0.5)
        assert torch.allclose(g.diagonal(), torch.ones(5)) and torch.allclose(g, g.T)


def test_per_datapoint_is_the_own_terms_plus_the_shared_mmd():
    model, guide, x = small_vae()
    objective = InfoVAE(alpha=0.25, lam=2.0, num_particles=3)
    torch.manual_seed(4)
    values = objective.per_datapoint(model, guide, x)
    torch.manual_seed(4)
    pair = run_pair(model, guide, x, 3)
    recon = sum(pair.log_p(n) for n in pair.observed)
    kl = pair.analytic_kl("z")
    mmd = objective.mmd(model, guide, x, pair)
    expected = (recon - 0.75 * kl).mean(0) - 1.25 * mmd.mean()
    assert torch.allclose(values, expected, atol=1e-5)


def test_alpha_zero_lambda_one_is_the_elbo_and_bound_is_the_elbo():
    model, guide, x = small_vae()
    torch.manual_seed(5)
    plain = InfoVAE(alpha=0.0, lam=1.0, num_particles=2).per_datapoint(model, guide, x)
    torch.manual_seed(5)
    elbo = ELBO(num_particles=2).per_datapoint(model, guide, x)
    assert torch.allclose(plain, elbo, atol=1e-5)
    torch.manual_seed(6)
    bound = InfoVAE(num_particles=2).bound(model, guide, x)
    torch.manual_seed(6)
    assert torch.allclose(bound, ELBO(num_particles=2).per_datapoint(model, guide, x), atol=1e-5)


def test_mmd_gradient_reaches_the_encoder():
    model, guide, x = small_vae()
    loss = InfoVAE(alpha=1.0, lam=1.0).mmd(model, guide, x).sum()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in guide.parameters())


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"alpha": 0.0, "lam": 0.5}, "alpha \\+ lam - 1"),
        ({"kernel": "laplace"}, "kernel"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_config_is_refused(overrides, words):
    with pytest.raises(ConfigError, match=words):
        build_objective("info_vae", overrides)


def test_batch_of_one_and_discrete_latents_are_refused():
    model, guide, x = small_vae()
    with pytest.raises(ConfigError, match="at least 2 samples"):
        InfoVAE().differentiable_loss(model, guide, x[:1])
    spins = build_model("block_spin", {"L": 4, "levels": 2, "channels": 4, "depth": 1})
    with pytest.raises(ConfigError, match="discrete"):
        InfoVAE().differentiable_loss(spins, spins.default_guide(), spins.example_x(3))


def test_check_pair_refuses_detached_guides_and_accepts_a_vae():
    model, guide, x = small_vae()
    InfoVAE().check_pair(model, guide, x)
    with torch.no_grad(), pytest.raises(ConfigError, match="detached"):
        InfoVAE().check_pair(model, build_guide("hmc_refined", model), x)
