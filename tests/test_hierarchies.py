"""Hierarchical models (HVAE, Markov HVAE, Ladder VAE, VLAE) and their guides: structure, the ladder merge,
parameter sharing between the Ladder VAE's model and guide, training, and checkpoint round trips."""

import math

import pytest
import torch
from pyro import poutine

from tests.conftest import binary_batch
from vaezoo import ELBO, ConfigError, checkpoint, fit
from vaezoo.guides.ladder import LadderGuide, precision_weighted
from vaezoo.inference import run_pair
from vaezoo.inference.fit import parameters
from vaezoo.nets import FeatureBatchNorm, evaluating
from vaezoo.registry import OBJECTIVES, build_guide, build_model, build_objective

HIERARCHIES = ["hvae", "markov_hvae", "lvae", "vlae"]
SHAPE = (1, 6, 6)


def small(name, depth, **kw):
    z_dims = tuple(range(depth + 1, 1, -1))  # distinct sizes, so a swapped layer shows up as a shape error
    return build_model(name, x_shape=SHAPE, z_dims=z_dims, hidden=(8,), **kw)


def sample_names(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("name", HIERARCHIES)
def test_sites_and_shapes_agree_at_every_depth(name, depth):
    model = small(name, depth)
    guide = model.default_guide()
    x = binary_batch(5, SHAPE)
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    assert model.layer_sites == tuple(f"z{j + 1}" for j in range(depth))
    assert sorted(sample_names(g)) == sorted(model.layer_sites)
    for j, site in enumerate(model.layer_sites):
        assert g.nodes[site]["value"].shape == (5, model.z_dims[j])
        assert m.nodes[site]["fn"].event_shape == g.nodes[site]["fn"].event_shape == (model.z_dims[j],)
    top_down = [f"z{j}" for j in range(depth, 0, -1)]
    assert sample_names(m) == (top_down if name != "vlae" else list(model.layer_sites)) + ["x"]
    log_w = run_pair(model, guide, x, num_particles=3).log_weight()
    assert log_w.shape == (3, 5) and torch.isfinite(log_w).all()


def conditioned(model, values, x):
    return poutine.trace(poutine.condition(model, data=values)).get_trace(x)


@pytest.mark.parametrize(("name", "markov"), [("hvae", False), ("markov_hvae", True), ("lvae", True)])
def test_conditioning_sets(name, markov):
    """z1 and x see z3 only through z2 (Markov) or directly (HVAE): perturb z3 with z1, z2 held."""
    model = small(name, 3)
    model.eval()
    x = binary_batch(4, SHAPE)
    values = {f"z{j + 1}": torch.randn(4, d) for j, d in enumerate(model.z_dims)}
    a = conditioned(model, values, x)
    b = conditioned(model, {**values, "z3": values["z3"] + 1.0}, x)
    for site in ("z1", "x"):
        same = torch.equal(a.nodes[site]["fn"].base_dist.mean, b.nodes[site]["fn"].base_dist.mean)
        assert same == markov, site
    # and z2's prior always follows z3
    assert not torch.equal(a.nodes["z2"]["fn"].base_dist.mean, b.nodes["z2"]["fn"].base_dist.mean)


def test_vlae_prior_is_independent_and_every_layer_reaches_x():
    model = small("vlae", 3)
    x = binary_batch(4, SHAPE)
    values = {f"z{j + 1}": torch.randn(4, d) for j, d in enumerate(model.z_dims)}
    base = conditioned(model, values, x)
    for site in model.layer_sites:
        fn = base.nodes[site]["fn"].base_dist
        assert torch.equal(fn.loc, torch.zeros_like(fn.loc)) and torch.equal(
            fn.scale, torch.ones_like(fn.scale)
        )
        moved = conditioned(model, {**values, site: values[site] + 1.0}, x)
        assert not torch.allclose(
            moved.nodes["x"]["fn"].base_dist.logits, base.nodes["x"]["fn"].base_dist.logits
        )


@pytest.mark.parametrize("x_shape", [(1, 28, 28), (3, 10, 9)])
def test_vlae_convolutional_variant(x_shape):
    model = build_model("vlae", x_shape=x_shape, architecture="conv", hidden=(16,), conv_channels=(4, 8))
    guide = model.default_guide()
    assert guide.config.architecture == "conv"
    x = binary_batch(3, x_shape)
    pair = run_pair(model, guide, x, num_particles=2)
    assert pair.model_sites["x"]["fn"].event_shape == x_shape
    assert pair.log_weight().shape == (2, 3) and torch.isfinite(pair.log_weight()).all()


def test_precision_weighted_merge_closed_form():
    torch.set_default_dtype(torch.float64)
    try:
        # Hand-worked: equal precisions average the means; sigma_hat=2, sigma_p=1 gives var 1/(1/4+1) = 0.8.
        mu, sigma = precision_weighted(*map(torch.tensor, ([1.0, 0.0], [1.0, 2.0], [3.0, 1.0], [1.0, 1.0])))
        torch.testing.assert_close(mu, torch.tensor([2.0, 0.8]))
        torch.testing.assert_close(sigma, torch.tensor([math.sqrt(0.5), math.sqrt(0.8)]))
        # N(z; mu_hat, s_hat) N(z; mu_p, s_p) / N(z; mu_q, s_q) must not depend on z (broadcast shapes too).
        g = torch.Generator().manual_seed(0)
        mu_hat, mu_p = torch.randn(3, 1, 4, generator=g), torch.randn(2, 4, generator=g)
        s_hat, s_p = torch.rand(3, 1, 4, generator=g) + 0.1, torch.rand(2, 4, generator=g) + 0.1
        mu_q, s_q = precision_weighted(mu_hat, s_hat, mu_p, s_p)
        assert mu_q.shape == s_q.shape == (3, 2, 4)
        z = torch.randn(7, 1, 1, 4, generator=g) * 3
        N = torch.distributions.Normal
        ratio = N(mu_hat, s_hat).log_prob(z) + N(mu_p, s_p).log_prob(z) - N(mu_q, s_q).log_prob(z)
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), atol=1e-10, rtol=0)
    finally:
        torch.set_default_dtype(torch.float32)


def test_ladder_guide_merges_its_bottom_up_pass_with_the_models_prior():
    model = small("lvae", 3)
    guide = model.default_guide()
    x = binary_batch(5, SHAPE)
    with evaluating(model, guide):
        trace = poutine.trace(guide).get_trace(x)
        estimates = guide.bottom_up_estimates(x)
        z = [trace.nodes[s]["value"] for s in model.layer_sites]
        for j in range(3):
            want = (
                estimates[j]
                if j == 2
                else precision_weighted(*estimates[j], *model.prior_loc_scale(j, z[j + 1 :]))
            )
            got = trace.nodes[model.layer_sites[j]]["fn"].base_dist
            torch.testing.assert_close((got.loc, got.scale), want, rtol=0, atol=0)


def test_ladder_guide_shares_exactly_the_models_top_down_parameters():
    model = small("lvae", 3)
    guide = model.default_guide()
    assert guide.top_down is model.top_down and guide.model is model
    model_ids = {id(p) for p in model.parameters()}
    guide_params = list(guide.parameters())
    assert guide_params and not model_ids & {id(p) for p in guide_params}
    assert all(k.startswith(("bottom_up.", "heads.")) for k in guide.state_dict())
    assert any(k.startswith("top_down.") for k in model.state_dict())
    assert len(parameters(model, guide)) == len(list(model.parameters())) + len(guide_params)
    # The guide's posterior for z1 is a function of the model's top-down weights (and not of its decoder).
    trace = poutine.trace(guide).get_trace(binary_batch(5, SHAPE))
    trace.nodes["z1"]["fn"].base_dist.loc.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.top_down[0][-1].parameters())
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is not None for p in guide.heads.parameters())


def test_ladder_guide_needs_a_top_down_model():
    with pytest.raises(ConfigError, match="shares the model's top-down networks"):
        build_guide("ladder", build_model("vae", x_shape=SHAPE, z_dim=2, hidden=(4,)))
    # ... but serves the other top-down hierarchies, whose priors it then shares.
    model = small("hvae", 3)
    assert LadderGuide(model, hidden=(8,)).top_down is model.top_down


def test_per_layer_widths_must_match_the_depth():
    with pytest.raises(ConfigError, match="3 latent layers but hidden=.* give one hidden per layer"):
        build_model("markov_hvae", x_shape=SHAPE, z_dims=(3, 2, 1), hidden=(8, 8))


def test_feature_batch_norm_folds_particle_dims_into_the_batch():
    bn = FeatureBatchNorm(3)
    x = torch.randn(4, 5, 3) * 2 + 1
    y = bn(x)
    flat = y.reshape(-1, 3)
    torch.testing.assert_close(flat.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    one = bn(x[1:2, 2:3])  # a single row in training mode: the running statistics, as in eval mode
    bn.eval()  # running statistics: each row independent of the others
    torch.testing.assert_close(bn(x)[1:2, 2:3], bn(x[1:2, 2:3]))
    torch.testing.assert_close(one, bn(x[1:2, 2:3]))


def test_lvae_trains_when_the_last_batch_has_one_image():
    model = small("lvae", 2)
    history = fit(
        model, model.default_guide(), prototype_data(33), ELBO(), epochs=1, batch_size=16, progress=False
    )
    assert math.isfinite(history[0]["train_loss"])


def prototype_data(n=256, seed=3):
    prototypes = binary_batch(4, SHAPE, seed=seed)
    return prototypes[torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("name", HIERARCHIES)
def test_training_raises_the_bound(name):
    data = prototype_data()
    model = build_model(name, x_shape=SHAPE, z_dims=(4, 2), hidden=(32,))
    guide = model.default_guide()

    def bound():
        torch.manual_seed(11)
        with evaluating(model, guide):
            return ELBO(num_particles=10).bound(model, guide, data).mean().item()

    before = bound()
    fit(model, guide, data, ELBO(kl_warmup=1.0), epochs=6, batch_size=32, lr=1e-2, progress=False)
    after = bound()
    # Start near 36 log(1/2) = -25 nats; four prototypes allow about log(1/4) = -1.4. The bound is an average
    # over 256 points, so its noise is a fraction of a nat: a 10-nat gain cannot be chance.
    assert after > before + 10, (before, after)


def test_lvae_checkpoint_round_trip(tmp_path):
    data = prototype_data(64)
    model = small("lvae", 3)
    guide = model.default_guide()
    fit(
        model,
        guide,
        data,
        ELBO(kl_warmup=1.0),
        epochs=2,
        batch_size=16,
        lr=1e-2,
        out=tmp_path,
        progress=False,
    )
    model2, guide2, objective, _ = checkpoint.restore(tmp_path / "checkpoint.pt")
    assert isinstance(guide2, LadderGuide) and guide2.top_down is model2.top_down
    for a, b in ((model, model2), (guide, guide2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    bounds = []
    for m, g in ((model, guide), (model2, guide2)):
        torch.manual_seed(5)
        with evaluating(m, g):
            bounds.append(objective.bound(m, g, data))
    torch.testing.assert_close(bounds[0], bounds[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    "objective",
    [
        {"name": "iwae", "k": 3},
        {"name": "iwae", "k": 3, "dreg": True},
        {"name": "score_function"},
        {"name": "score_function", "bound": "iwae", "num_particles": 3, "baseline": "vimco"},
    ],
    ids=["iwae", "iwae-dreg", "score_function", "score_function-vimco"],
)
@pytest.mark.parametrize("model_name", HIERARCHIES)
def test_every_hierarchy_trains_under_other_estimators(model_name, objective):
    """Two epochs with finite losses that move the model and the guide (for the Ladder VAE: the shared
    top-down networks and the guide's own bottom-up ones)."""
    config = dict(objective)
    name = config.pop("name")
    if name not in OBJECTIVES:
        pytest.skip(f"objective {name!r} is not registered")
    model = small(model_name, 3)
    guide = model.default_guide()
    watched = {"model": next(iter(model.parameters())), "guide": next(iter(guide.parameters()))}
    if model_name == "lvae":
        watched.update(top_down=model.top_down[0][-1].weight, bottom_up=guide.heads[0].weight)
    before = {k: p.detach().clone() for k, p in watched.items()}
    history = fit(
        model,
        guide,
        prototype_data(64),
        build_objective(name, config),
        epochs=2,
        batch_size=16,
        progress=False,
    )
    assert all(math.isfinite(h["train_loss"]) for h in history)
    assert all(not torch.equal(before[k], p) for k, p in watched.items())
