"""The multimodal VAE: its product-of-experts guide against the exact posterior of a linear-Gaussian
two-view model, masks, the sub-sampled objective against hand-summed ELBOs, and bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from vaezoo import ConfigError, DataError, build_model, build_objective, fit, log_likelihood
from vaezoo.data import batches
from vaezoo.guides import ProductOfExperts, product_of_gaussians
from vaezoo.inference import ELBO, training_subsets
from vaezoo.multimodal import MultimodalBatch, MultimodalDataset
from vaezoo.multimodal_data import presence

D, d = 4, 3  # pixels per view, latent dimension


def linear_two_view(seed=0):
    """An MVAE that *is* the linear-Gaussian two-view model x_m = W_m z + b_m + N(0, s_m^2 I), with
    W_m = Q_m diag(c_m) (orthonormal Q_m), and a guide whose experts are each view's exact likelihood
    read as a Gaussian in z: N(z; c^-1 Q^T (x - b), diag(s^2 / c^2)). Returns model, guide, truth."""
    g = torch.Generator().manual_seed(seed)
    model = build_model("mvae", image_shape=(D,), y_kind="image", likelihood="gaussian", z_dim=d, hidden=())
    guide = ProductOfExperts(model, hidden=(), min_scale=0.0)
    truth = {}
    with torch.no_grad():
        for name in ("x", "y"):
            Q = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))[0]
            c = 0.5 + torch.rand(d, generator=g, dtype=torch.float64) * 1.5
            b = torch.randn(D, generator=g, dtype=torch.float64)
            s = 0.3 + torch.rand((), generator=g, dtype=torch.float64)
            W = Q * c
            lin = model.decoders[name][0]
            lin.weight.copy_(W)
            lin.bias.copy_(b)
            model.raw_scales[name].fill_(math.log(math.expm1(s - 1e-3)))  # softplus(raw) + 1e-3 = s
            A = Q.T / c[:, None]
            head = guide.heads[name]
            head.weight.zero_()
            head.weight[:d].copy_(A)
            head.bias[:d].copy_(-A @ b)
            head.bias[d:].copy_(torch.log(torch.expm1(s / c)))  # expert scale s / c
            truth[name] = (W, b, s)
    return model, guide, truth


def exact_posterior(truth, x, names):
    """Mean and covariance of z given the views ``names``, by conditioning the joint Gaussian of
    (z, x_1, x_2) (no product-of-experts algebra)."""
    W = torch.cat([truth[n][0] for n in names])
    b = torch.cat([truth[n][1] for n in names])
    noise = torch.cat([truth[n][2].expand(D) for n in names])
    C_oo = W @ W.T + torch.diag(noise**2)
    gain = torch.linalg.solve(C_oo, W).T  # C_zo C_oo^-1
    obs = torch.cat([x[n] for n in names], -1)
    return (obs - b) @ gain.T, torch.eye(d, dtype=W.dtype) - gain @ W, (b, C_oo)


@pytest.mark.parametrize("names", [("x",), ("y",), ("x", "y")])
def test_product_of_experts_is_the_exact_posterior_of_the_linear_gaussian_two_view_model(float64, names):
    model, guide, truth = linear_two_view()
    x = {n: torch.randn(5, D) * 2 for n in ("x", "y")}
    present = {n: torch.full((5,), n in names) for n in ("x", "y")}
    loc, scale = guide.posterior(MultimodalBatch(x, present))
    mean, cov, _ = exact_posterior(truth, x, names)
    assert torch.allclose(loc, mean, atol=1e-10)
    # The exact covariance is diagonal here (orthogonal columns), and equals the product's.
    assert torch.allclose(torch.diag_embed(scale**2).expand(5, d, d), cov.expand(5, d, d), atol=1e-10)


def test_importance_sampling_with_the_exact_guide_gives_the_exact_marginal_of_each_subset(float64):
    model, guide, truth = linear_two_view(seed=3)
    x = {n: torch.randn(6, D) for n in ("x", "y")}
    present = {"x": torch.tensor([1, 1, 0, 1, 0, 1]).bool(), "y": torch.tensor([1, 0, 1, 1, 1, 0]).bool()}
    est = log_likelihood(model, guide, MultimodalBatch(x, present), k=4)
    for i in range(6):
        names = [n for n in ("x", "y") if present[n][i]]
        _, _, (b, C_oo) = exact_posterior(truth, {n: x[n][i] for n in names}, names)
        obs = torch.cat([x[n][i] for n in names])
        exact = torch.distributions.MultivariateNormal(b, C_oo).log_prob(obs)
        assert est.per_datapoint[i].item() == pytest.approx(exact.item(), abs=1e-9)
        assert est.mc_stderr[i].item() < 1e-6  # every weight equals p(x_O)


def small(y_kind="label"):
    model = build_model("mvae", image_shape=(1, 4, 4), y_kind=y_kind, z_dim=3, hidden=(8,), label_hidden=(8,))
    return model, model.default_guide()


def binary_batch(n=6, present=None, y_kind="label"):
    g = torch.Generator().manual_seed(1)
    y = (
        torch.randint(10, (n,), generator=g)
        if y_kind == "label"
        else torch.bernoulli(torch.full((n, 1, 4, 4), 0.3))
    )
    return MultimodalBatch(
        {"x": torch.bernoulli(torch.full((n, 1, 4, 4), 0.4), generator=g), "y": y}, present
    )


def test_a_missing_modality_is_dropped_from_the_posterior_and_the_likelihood():
    model, guide = small()
    present = {"x": torch.tensor([1, 1, 1, 0]).bool(), "y": torch.tensor([1, 0, 1, 1]).bool()}
    batch = binary_batch(4, present)
    loc, scale = guide.posterior(batch)
    for name, rows in (("x", [1]), ("y", [3])):
        e_loc, e_prec = guide.expert(name, batch.values[name])
        ref_loc, ref_scale = product_of_gaussians([e_loc], [e_prec])
        assert torch.allclose(loc[rows], ref_loc[rows]) and torch.allclose(scale[rows], ref_scale[rows])
    # Whatever the absent values were, nothing changes.
    other = MultimodalBatch({"x": 1 - batch.values["x"], "y": (batch.values["y"] + 3) % 10}, present)
    assert torch.equal(other.values["x"][3], batch.values["x"][3]) and other.values["y"][1] == 0
    tr = poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace(batch))).get_trace(batch)
    lp_y = tr.nodes["y"]["fn"].log_prob(tr.nodes["y"]["value"])
    assert lp_y[1] == 0 and (lp_y[[0, 2, 3]] < 0).all()


def test_model_and_guide_sites_agree_and_one_training_step_is_finite():
    model, guide = small("image")
    batch = binary_batch(5, {"y": torch.tensor([1, 1, 0, 0, 1]).bool()}, y_kind="image")
    g = poutine.trace(guide).get_trace(batch)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(batch)
    latent = [n for n, s in m.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "data"]
    observed = [n for n, s in m.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    assert latent == ["z"] and observed == ["x", "y"]
    assert g.nodes["z"]["fn"].event_shape == m.nodes["z"]["fn"].event_shape == (3,)
    history = fit(
        model, guide, batch, build_objective("multimodal_elbo"), epochs=1, batch_size=5, progress=False
    )
    assert math.isfinite(history[0]["train_loss"])


def test_the_objective_is_the_sum_of_the_elbos_of_distinct_subsets():
    model, guide = small()
    present = {"x": torch.tensor([1, 1, 0, 1, 1]).bool(), "y": torch.tensor([1, 0, 1, 1, 0]).bool()}
    batch = binary_batch(5, present)
    objective = build_objective("multimodal_elbo")
    torch.manual_seed(7)
    got = objective.per_datapoint(model, guide, batch)
    # By hand: the joint ELBO for everyone; the single-modality ELBOs only for the complete rows
    # (rows 1, 2, 4 have one modality, whose ELBO the joint term already is). Same draws, same order.
    torch.manual_seed(7)
    elbo = ELBO()
    complete = torch.tensor([0, 3])
    want = elbo.per_datapoint(model, guide, batch).clone()
    want[complete] += elbo.per_datapoint(model, guide, batch.restrict(["x"]).take(complete))
    want[complete] += elbo.per_datapoint(model, guide, batch.restrict(["y"]).take(complete))
    assert torch.allclose(got, want, atol=1e-6)
    torch.manual_seed(7)
    bound = objective.bound(model, guide, batch)
    torch.manual_seed(7)
    assert torch.allclose(bound, elbo.per_datapoint(model, guide, batch))


def test_one_step_computes_each_expert_once_and_the_next_step_anew(monkeypatch):
    model, guide = small()
    batch = binary_batch(5)
    calls = []
    expert = guide.expert
    monkeypatch.setattr(guide, "expert", lambda name, value: calls.append(name) or expert(name, value))
    objective = build_objective("multimodal_elbo")
    objective.differentiable_loss(model, guide, batch)
    assert sorted(calls) == ["x", "y"]  # three ELBOs, each expert computed once
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(0.1)
    torch.manual_seed(0)
    again = objective.per_datapoint(model, guide, batch)
    assert sorted(calls) == ["x", "x", "y", "y"]
    torch.manual_seed(0)
    elbo = ELBO()
    want = sum(elbo.per_datapoint(model, guide, batch.restrict(s)) for s in (["x", "y"], ["x"], ["y"]))
    assert torch.allclose(again, want, atol=1e-6)


def test_likelihood_weights_scale_only_the_likelihoods():
    model, guide = small()
    batch = binary_batch(5)

    def objective(*weights, seed=3):
        torch.manual_seed(seed)
        return build_objective("multimodal_elbo", likelihood_weights=weights).per_datapoint(
            model, guide, batch
        )

    # Weight 0 on every likelihood leaves the three KL terms, in closed form.
    kl = 0
    for subset in (["x", "y"], ["x"], ["y"]):
        loc, scale = guide.posterior(batch.restrict(subset))
        kl = kl + (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum(-1)
    assert torch.allclose(objective(0.0, 0.0), -kl, atol=1e-5)
    # On the same draws the objective is affine in each weight.
    base = objective(1.0, 1.0)
    assert torch.allclose(objective(1.0, 3.0) - base, 2 * (objective(1.0, 2.0) - base), atol=1e-4)
    assert not torch.allclose(objective(1.0, 2.0), base)
    with pytest.raises(ConfigError, match="one weight per modality"):
        build_objective("multimodal_elbo", likelihood_weights=(1.0,)).check_pair(model, guide, batch)


def test_training_subsets_cover_joint_singles_and_random_middle_subsets():
    assert training_subsets(("x", "y"), 0) == [("x", "y"), ("x",), ("y",)]
    with pytest.raises(ConfigError, match="at least 3 modalities"):
        training_subsets(("x", "y"), 2)
    subsets = training_subsets(("a", "b", "c"), 50, torch.Generator().manual_seed(0))
    assert subsets[:4] == [("a", "b", "c"), ("a",), ("b",), ("c",)]
    assert len(subsets) == 7 and {len(s) for s in subsets[4:]} == {2} and len(set(subsets[4:])) == 3
    names = tuple("abcde")
    drawn = training_subsets(names, 4, torch.Generator().manual_seed(1))[6:]
    assert len(set(drawn)) == 4 and all(2 <= len(s) <= 4 for s in drawn)


def test_multimodal_data_sets_are_served_as_batches_with_their_masks():
    mask = presence(10, 0.4, seed=0)
    assert int((mask["x"] & mask["y"]).sum()) == 4 and bool((mask["x"] | mask["y"]).all())
    data = MultimodalDataset(
        {"x": torch.bernoulli(torch.full((10, 1, 4, 4), 0.5)), "y": torch.arange(10)}, mask
    )
    seen = list(batches(data, 4))
    assert [len(b) for b in seen] == [4, 4, 2] and all(isinstance(b, MultimodalBatch) for b in seen)
    assert torch.equal(torch.cat([b.present["y"] for b in seen]), mask["y"])
    model, guide = small()
    assert fit(model, guide, data, build_objective("multimodal_elbo"), epochs=1, batch_size=4, progress=False)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: MultimodalBatch({"x": b.values["x"], "y": b.values["y"] + 10}), r"outside \[0, 10\)"),
        (
            lambda b: MultimodalBatch(b.values, {"x": torch.zeros(6).bool(), "y": torch.arange(6) < 3}),
            r"datapoint\(s\) \[3, 4, 5\] have every modality missing",
        ),
        (
            lambda b: MultimodalBatch({"x": b.values["x"].flatten(1), "y": b.values["y"]}),
            r"must have shape \(6, 1, 4, 4\)",
        ),
        (lambda b: MultimodalBatch({"x": b.values["x"], "y": F.one_hot(b.values["y"], 10)}), "not one-hot"),
        (lambda b: MultimodalBatch({"x": b.values["x"]}), r"expects modalities \['x', 'y'\]"),
        (lambda b: b.values["x"], "takes a MultimodalBatch"),
        (lambda b: MultimodalBatch({"x": b.values["x"] * 0.5, "y": b.values["y"]}), r"values in \{0, 1\}"),
    ],
)
def test_bad_data_is_refused_with_the_fix(make, message):
    model, guide = small()
    with pytest.raises(DataError, match=message):
        fit(model, guide, make(binary_batch()), build_objective("multimodal_elbo"), epochs=1, progress=False)


def test_bad_batches_and_pairings_are_refused():
    with pytest.raises(DataError, match="same number of rows"):
        MultimodalBatch({"x": torch.zeros(3, 2), "y": torch.zeros(4)})
    with pytest.raises(DataError, match=r"present\['y'\] must have shape \(3,\)"):
        MultimodalBatch({"x": torch.zeros(3, 2), "y": torch.zeros(3)}, {"y": torch.ones(4)})
    vae = build_model("vae", x_shape=(1, 4, 4), z_dim=2, hidden=(4,))
    with pytest.raises(ConfigError, match="product_of_experts needs a multimodal model"):
        ProductOfExperts(vae)
    with pytest.raises(ConfigError, match="multimodal_elbo trains multimodal models"):
        build_objective("multimodal_elbo").check_pair(vae, vae.default_guide(), vae.example_x(2))
    model, guide = small()
    with pytest.raises(ConfigError, match="set num_subsets=0"):
        build_objective("multimodal_elbo", num_subsets=1).check_pair(model, guide, binary_batch())
    with pytest.raises(ConfigError, match="use the guide 'product_of_experts'"):
        build_model("mvae").x_shape  # noqa: B018 (what single-tensor guides read, and are refused by)
