"""experiments/gibbs_bottom_layer.py: the chain step, the scores against hand-computed values, the report."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from vaezoo import build_model
from vaezoo.nets import normal_head

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "gibbs_bottom_layer", ROOT / "experiments" / "gibbs_bottom_layer.py"
)
gibbs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gibbs)


def _fd(mu1, cov1, mu2, cov2):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return gibbs.frechet_distance(t(mu1), t(cov1), t(mu2), t(cov2))


def test_frechet_distance_of_diagonal_gaussians():
    # |(1, 2)|^2 + (sqrt 4 - sqrt 1)^2 + (sqrt 9 - sqrt 1)^2 = 5 + 1 + 4
    assert _fd([1.0, 2.0], [[4.0, 0.0], [0.0, 9.0]], [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(
        10
    )


def test_frechet_distance_of_non_commuting_and_scaled_covariances():
    s = [[2.0, 1.0], [1.0, 2.0]]  # eigenvalues 3 and 1: W2^2 to N(0, I) is (sqrt 3 - 1)^2 + 0
    eye = [[1.0, 0.0], [0.0, 1.0]]
    assert _fd([0, 0], s, [0, 0], eye) == pytest.approx(4 - 2 * math.sqrt(3))
    assert _fd([0, 0], eye, [0, 0], s) == pytest.approx(4 - 2 * math.sqrt(3))
    a = torch.tensor([[1.0, 0.3, 0.0], [0.3, 2.0, -0.5], [0.0, -0.5, 1.5]])
    # cov2 = 4 cov1: tr(S + 4S - 2 * 2S) = tr S; plus the squared mean shift 3.
    assert _fd([0, 0, 0], a.tolist(), [1, 1, 1], (4 * a).tolist()) == pytest.approx(3 + 4.5)
    assert _fd([1, 2, 3], a.tolist(), [1, 2, 3], a.tolist()) == pytest.approx(0, abs=1e-9)


def test_inception_analogue_and_entropies_by_hand():
    # p(y) = (3/4, 1/4); KLs log(4/3) and (log(2/3) + log 2) / 2; their mean is exponentiated.
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    kl = (math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * math.log(2)) / 2
    assert gibbs.inception_analogue(probs) == pytest.approx(math.exp(kl))
    assert gibbs.inception_analogue(torch.eye(10, dtype=torch.float64)) == pytest.approx(10)
    assert gibbs.inception_analogue(torch.full((5, 10), 0.1, dtype=torch.float64)) == pytest.approx(1)
    feats = torch.randn(8, 3, dtype=torch.float64)
    s = gibbs.scores(probs.repeat(4, 1), feats, gibbs.gaussian(feats), torch.ones(8, 2), boot=20)
    assert s["is"][0] == pytest.approx(math.exp(kl))
    assert s["entropy"][0] == pytest.approx(math.log(2) / 2)  # H of (1, 0) and (1/2, 1/2)
    assert s["label_entropy"][0] == 0.0  # argmax is class 0 for both rows
    assert s["ink"] == [1.0, 0.0, 1.0, 1.0]
    assert s["is"][2] <= s["is"][0] + 1e-12 and s["is"][1] > 0  # resampling changes the mixture


def _tiny():
    torch.manual_seed(0)
    model = build_model("markov_hvae", x_shape=(1, 2, 3), z_dims=(3, 2), hidden=(8,), mlp_layers=1)
    guide = model.default_guide()
    return model.eval(), guide.eval()


def test_gibbs_step_draws_binary_x_from_the_bottom_layer_only():
    model, guide = _tiny()
    x = torch.bernoulli(torch.full((4, 1, 2, 3), 0.5))
    torch.manual_seed(1)
    first = gibbs.gibbs_step(model, guide, x)
    assert first.shape == x.shape and set(first.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():  # the layers above z_1 must not enter the step
        for p in [*model.top_down.parameters(), *guide.nets[1].parameters()]:
            p.add_(1.0)
    torch.manual_seed(1)
    assert torch.equal(gibbs.gibbs_step(model, guide, x), first)


def test_gibbs_step_has_the_transition_mean_of_q_then_p():
    """E[x' | x] = E_{z_1 ~ q(z_1|x)} sigmoid(f(z_1)), computed here from the networks directly."""
    model, guide = _tiny()
    with torch.no_grad():  # a steep decoder, so that a draw of z_1 and its mean decode differently
        model.decoder[-1].weight.mul_(10.0)
    x = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]]])
    n = 20000
    torch.manual_seed(2)
    draws = gibbs.gibbs_step(model, guide, x.expand(n, -1, -1, -1).contiguous()).flatten(1)
    with torch.no_grad():
        loc, scale = normal_head(guide.nets[0](x.flatten(1)), guide.config.min_scale)
        z1 = loc + scale * torch.randn(200000, 3)
        want = model.decoder(z1).sigmoid().mean(0)
    se = (want * (1 - want) / n).sqrt()
    assert ((draws.mean(0) - want).abs() < 4 * se).all(), (draws.mean(0), want, se)
    # Decoding the posterior mean instead of a draw would move some pixel by many standard errors.
    with torch.no_grad():
        at_mean = model.decoder(loc).sigmoid()[0]
    assert ((at_mean - want).abs() > 4 * se).any()


def test_ancestral_samples_use_every_layer():
    model, _ = _tiny()
    torch.manual_seed(3)
    first = gibbs.ancestral(model, 50)
    assert first.shape == (50, 1, 2, 3) and set(first.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():
        model.top_down[0][-1].bias.add_(3.0)
    torch.manual_seed(3)
    assert not torch.equal(gibbs.ancestral(model, 50), first)


def test_smoke_pipeline_report_reads_its_json(tmp_path, idx_root):
    common = ["--smoke", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    common += ["--md", str(tmp_path / "gibbs.md"), "--models", "markov_hvae-3"]
    for stage in ("train", "eval", "report"):
        gibbs.main([*common, stage])
    ev = json.loads((tmp_path / "out" / "eval-markov_hvae-3.json").read_text())
    chain = ev["gibbs from noise"]
    assert list(chain) == ["0", "1", "2", "5", "10"]
    text = (tmp_path / "gibbs.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| ancestral (all layers) |"))
    assert row.split(" | ")[1] == f"{ev['ancestral']['is'][0]:.2f} ± {ev['ancestral']['is'][1]:.2f}"
    assert "| Gibbs from noise, t = 10 |" in text and (tmp_path / "out" / "scores_vs_t.png").is_file()
    # The report keeps the text around its markers.
    (tmp_path / "gibbs.md").write_text(text.replace(gibbs.START, "intro\n" + gibbs.START) + "outro\n")
    gibbs.main([*common, "report"])
    again = (tmp_path / "gibbs.md").read_text()
    assert again.startswith("# Gibbs") and "intro\n" in again and again.endswith("outro\n")
