"""VQ-VAE (issue 13): quantization, straight-through gradient, VQ losses, EMA, restarts, bound, prior."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo import ConfigError, build_model
from vaezoo.inference import ELBO, VQ, code_maps, fit, fit_code_prior, log_likelihood
from vaezoo.nets import Codebook

TINY = {"x_shape": (1, 4, 4), "codebook_size": 3, "code_dim": 2, "downsample": 1, "channels": 4,
        "prior_channels": 8, "prior_layers": 2}


def tiny(**overrides):
    model = build_model("vqvae", {**TINY, **overrides})
    return model, model.default_guide()


class Fixed(nn.Module):
    """An 'encoder' whose output is one leaf tensor, so gradients with respect to z_e can be read."""

    def __init__(self, z_e):
        super().__init__()
        self.z_e = nn.Parameter(z_e)

    def forward(self, x):
        return self.z_e.expand(x.shape[0], *self.z_e.shape[1:])


def test_nearest_code_is_brute_force():
    torch.manual_seed(0)
    book = Codebook(16, 5)
    book.vectors.data.normal_()
    e = book.vectors.detach()
    v = torch.randn(3, 7, 5)
    brute = torch.tensor([[min(range(16), key=lambda k: float(((u - e[k]) ** 2).sum())) for u in row]
                          for row in v])
    assert torch.equal(book.nearest(v), brute)


def test_straight_through_gradient_equals_gradient_at_z_q():
    torch.manual_seed(1)
    model, guide = tiny()
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5))
    q = guide.quantize(x)
    z_e = q.z_e
    z_e.retain_grad()
    loss = -model.x_dist(q.straight_through).log_prob(x).sum()
    loss.backward()
    z_q = q.z_q.detach().requires_grad_(True)
    (-model.x_dist(z_q).log_prob(x).sum()).backward()
    # in value z_q, up to the rounding of z_e + (z_q - z_e) in float32
    torch.testing.assert_close(q.straight_through, q.z_q)
    assert torch.allclose(z_e.grad, z_q.grad, rtol=1e-5, atol=1e-7)
    assert model.codebook.vectors.grad is None  # the decoder's gradient skips the codebook


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_vq_losses_by_hand_and_where_their_gradients_go(update):
    model, guide = tiny(codebook_update=update, downsample=2, dead_after=0)  # a 1x1 code map
    with torch.no_grad():
        model.codebook.vectors.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, -1.0]]))
    z_e = torch.tensor([[[[0.8]], [[0.5]]], [[[2.0]], [[-2.0]]]])  # (2, D=2, 1, 1): nearest codes 1 and 2
    guide.encoder = Fixed(z_e)
    guide.eval()  # no EMA step, so the codebook stays where it was put
    x = torch.zeros(2, 1, 4, 4)
    objective = VQ(commitment=0.25)
    bound, penalty = objective.terms(model, guide, x)
    d2 = torch.tensor([0.2**2 + 0.5**2, 1.0**2 + 1.0**2])
    weight = 1.25 if update == "loss" else 0.25
    assert torch.allclose(penalty, weight * d2)
    assert torch.allclose(bound, ELBO().bound(model, guide, x))
    penalty.sum().backward()
    # commitment: d/dz_e 0.25 ||z_e - sg[e]||^2 = 0.5 (z_e - e); the codebook loss never reaches z_e
    e = torch.tensor([[1.0, 1.0], [3.0, -1.0]])
    want = 0.5 * (z_e.reshape(2, 2) - e)
    assert torch.allclose(guide.encoder.z_e.grad.reshape(2, 2), want)
    if update == "loss":  # codebook loss: d/de ||sg[z_e] - e||^2 = 2 (e - z_e), chosen codes only
        grad = model.codebook.vectors.grad
        assert torch.allclose(grad[1:], 2 * (e - z_e.reshape(2, 2)))
        assert torch.equal(grad[0], torch.zeros(2))
    else:
        assert not model.codebook.vectors.requires_grad
    assert all(p.grad is None for p in model.decoder.parameters())


def test_ema_update_is_the_closed_form():
    book = Codebook(2, 1, update="ema", decay=0.5, epsilon=0.1)
    with torch.no_grad():
        book.vectors.copy_(torch.tensor([[0.0], [10.0]]))
        book.ema_sum.copy_(book.vectors)
    book.observe(torch.tensor([[1.0], [2.0], [9.0]]), torch.tensor([0, 0, 1]))
    # N = 0.5 * 1 + 0.5 * (2, 1) = (1.5, 1); m = 0.5 * (0, 10) + 0.5 * (3, 9) = (1.5, 9.5)
    # N~ = (N + 0.1) / (2.5 + 0.2) * 2.5
    smoothed = torch.tensor([1.6, 1.1]) / 2.7 * 2.5
    assert torch.allclose(book.ema_count, torch.tensor([1.5, 1.0]))
    assert torch.allclose(book.ema_sum, torch.tensor([[1.5], [9.5]]))
    assert torch.allclose(book.vectors, torch.tensor([[1.5], [9.5]]) / smoothed[:, None])


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_dead_codes_are_restarted_on_encoder_outputs(update):
    torch.manual_seed(2)
    book = Codebook(4, 2, update=update, dead_after=2)
    with torch.no_grad():
        book.vectors.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
        if update == "ema":  # e = m / N, so the moving sums must move with the vectors
            book.ema_sum.copy_(book.vectors)
    v = torch.randn(10, 2) * 0.1  # all nearest to code 0
    codes = book.nearest(v)
    assert torch.equal(codes, torch.zeros(10, dtype=torch.long))
    book.observe(v, codes)
    assert torch.equal(book.unused_steps, torch.tensor([0, 1, 1, 1]))
    assert book.vectors[1:].min() > 40  # not dead yet (EMA rounds 50 to 49.99999)
    book.observe(v, codes)
    for k in (1, 2, 3):  # restarted onto rows of the batch
        assert any(torch.equal(book.vectors[k], row) for row in v)
    assert torch.equal(book.unused_steps, torch.zeros(4, dtype=torch.long))
    if update == "ema":
        assert torch.equal(book.ema_sum[1:], book.vectors[1:])
        assert torch.equal(book.ema_count[1:], torch.ones(3))


def test_first_batch_moves_the_codes_it_leaves_unused_onto_its_outputs():
    torch.manual_seed(10)
    book = Codebook(6, 2, init_from_data=True)
    v = torch.randn(30, 2) * 5
    codes = book.nearest(v)
    unused = sorted(set(range(6)) - set(codes.tolist()))
    used = sorted(set(codes.tolist()))
    before = book.vectors.detach().clone()
    book.observe(v, codes)
    assert unused  # the uniform initialization leaves some codes unchosen
    for k in unused:
        assert any(torch.equal(book.vectors[k], row) for row in v)
    assert torch.equal(book.vectors[used], before[used])
    assert not book.pending_init
    after = book.vectors.detach().clone()
    book.observe(torch.randn(30, 2), torch.zeros(30, dtype=torch.long))  # only once: codes 1..5 stay put
    assert torch.equal(book.vectors, after)


def test_eval_mode_leaves_the_codebook_alone():
    model, guide = tiny(codebook_update="ema", dead_after=1)
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    before = {k: v.clone() for k, v in model.codebook.state_dict().items()}
    guide.eval()
    VQ().bound(model, guide, x)
    assert all(torch.equal(before[k], v) for k, v in model.codebook.state_dict().items())
    guide.train()
    VQ().differentiable_loss(model, guide, x)
    assert not torch.equal(before["ema_count"], model.codebook.ema_count)


@pytest.mark.parametrize("learned", [False, True])
def test_bound_is_log_p_x_given_z_q_plus_log_p_z_q(float64, learned):
    torch.manual_seed(3)
    model, guide = tiny(downsample=0, x_shape=(1, 2, 2))  # a 2x2 code map
    model.prior_fitted.fill_(learned)
    guide.eval()
    x = torch.bernoulli(torch.full((6, 1, 2, 2), 0.5))
    z_e = guide.encoder(x)  # (6, D, 2, 2)
    e = model.codebook.vectors
    dist2 = ((z_e.movedim(1, -1)[..., None, :] - e) ** 2).sum(-1)
    codes = dist2.argmin(-1)  # (6, 2, 2)
    z_q = e[codes].movedim(-1, 1)
    p = torch.sigmoid(model.decoder(z_q))
    log_px = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))
    if learned:
        logits = model.prior(F.one_hot(codes, 3).movedim(-1, 1).double()).log_softmax(1)
        log_pz = logits.gather(1, codes[:, None]).squeeze(1).sum((1, 2))
    else:
        log_pz = torch.full((6,), -4 * math.log(3))
    want = log_px + log_pz
    assert torch.allclose(VQ().bound(model, guide, x), want)
    assert torch.allclose(ELBO().bound(model, guide, x), want)
    # Importance sampling with a deterministic proposal gives the same bound at any k.
    assert torch.allclose(log_likelihood(model, guide, x, k=7).per_datapoint, want)


def test_pixelcnn_prior_sums_to_one_over_all_code_maps(float64):
    torch.manual_seed(4)
    model, _ = tiny(downsample=0, x_shape=(1, 2, 2))
    for p in model.prior.parameters():  # far from uniform, so the test can fail
        p.data.normal_(0, 1)
    maps = torch.tensor(list(itertools.product(range(3), repeat=4))).reshape(81, 2, 2)
    log_p = model.code_log_prob(maps)
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    assert log_p.exp().max() > 3 / 81
    # Sequential sampling draws from the same distribution (max z-score over the 81 maps).
    model.prior_fitted.fill_(True)
    n = 20000
    drawn = model.z_dist(torch.zeros(n)).sample_codes()
    index = (drawn.reshape(n, 4) * torch.tensor([27, 9, 3, 1])).sum(1)
    freq = torch.bincount(index, minlength=81).double() / n
    p = log_p.exp()
    assert ((freq - p).abs() / (p * (1 - p) / n).sqrt()).max() < 4.5


def test_codebook_of_size_0_or_1_is_a_config_error():
    for k in (0, 1):
        with pytest.raises(ConfigError, match="codebook_size.*>= 2"):
            build_model("vqvae", codebook_size=k)
        with pytest.raises(ConfigError, match="at least 2 codes.*codebook_size >= 2"):
            Codebook(k, 4)


def test_bad_shapes_and_pairs_are_config_errors():
    with pytest.raises(ConfigError, match="multiples of 8"):
        build_model("vqvae", x_shape=(1, 28, 28), downsample=3)
    vae = build_model("vae", x_shape=(1, 4, 4), z_dim=2, hidden=(4,))
    from vaezoo.registry import build_guide

    with pytest.raises(ConfigError, match="codebook"):
        build_guide("vq", vae)
    with pytest.raises(ConfigError, match="quantizes"):
        VQ().check_pair(vae, vae.default_guide(), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ConfigError, match="prior over code maps"):
        fit_code_prior(vae, vae.default_guide(), torch.zeros(2, 1, 4, 4), epochs=1)


def _patterns(n=200, seed=5):
    """Binary 8x8 images: four fixed prototypes, drawn with ``seed``, with 5% of pixels flipped."""
    protos = torch.bernoulli(torch.full((4, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(seed)
    x = protos[torch.randint(4, (n,), generator=g)]
    flip = torch.bernoulli(torch.full_like(x, 0.05), generator=g)
    return (x + flip) % 2


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_a_few_epochs_lower_the_loss_and_the_prior_fit_beats_uniform(update):
    torch.manual_seed(6)
    model = build_model("vqvae", x_shape=(1, 8, 8), codebook_size=8, code_dim=4, channels=16,
                        codebook_update=update, prior_channels=16, prior_layers=2, dead_after=20)
    guide = model.default_guide()
    x = _patterns()
    history = fit(model, guide, x, VQ(), epochs=20, batch_size=20, lr=3e-3, progress=False)
    # A decoder that ignores z does at best the data's own pixel marginals, plus the constant KL hw log K;
    # the training loss (-bound + the VQ losses >= 0) must get well below that (46.0 nats here).
    p = x.mean(0).clamp(1e-6, 1 - 1e-6)
    ignoring_z = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3)).mean() + 4 * math.log(8)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_loss"] < ignoring_z - 10
    uniform = 4 * math.log(8)  # 2x2 code map
    prior = fit_code_prior(model, guide, x, epochs=15, batch_size=20, lr=1e-2, test=_patterns(seed=7))
    assert prior[-1]["test_code_nll"] < uniform - 1
    assert bool(model.prior_fitted)
    x = _patterns(50, seed=8)
    with torch.no_grad():
        model.eval(), guide.eval()
        learned = VQ().bound(model, guide, x)
        model.prior_fitted.fill_(False)
        flat = VQ().bound(model, guide, x)
    assert learned.mean() > flat.mean()  # only log p(z) changed


def test_code_maps_are_the_guides_codes():
    model, guide = tiny()
    x = torch.bernoulli(torch.full((7, 1, 4, 4), 0.5))
    guide.eval()
    assert torch.equal(code_maps(guide, x, batch_size=3), guide.quantize(x).codes)


def test_resume_keeps_the_ema_buffers(tmp_path):
    def run(out, epochs):
        torch.manual_seed(9)
        model = build_model("vqvae", x_shape=(1, 8, 8), codebook_size=8, code_dim=4, channels=8,
                            codebook_update="ema", dead_after=3, prior_channels=4, prior_layers=1)
        guide = model.default_guide()
        fit(model, guide, _patterns(60), VQ(), epochs=epochs, batch_size=20, out=out, progress=False)
        return model

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2)
    for name in ("vectors", "ema_count", "ema_sum", "unused_steps"):
        a, b = getattr(straight.codebook, name), getattr(resumed.codebook, name)
        assert torch.equal(a, b), name
    assert not torch.equal(straight.codebook.ema_count, torch.ones(8))
