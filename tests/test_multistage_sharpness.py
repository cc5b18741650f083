"""experiments/multistage_sharpness.py: its sharpness measures, the scale refit, and train -> report."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F

from vaezoo import build_model
from vaezoo.distributions.pixel import pixel_scale

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ms():
    spec = importlib.util.spec_from_file_location(
        "multistage_sharpness", ROOT / "experiments/multistage_sharpness.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_grad_energy_by_hand(ms):
    # A vertical edge 0 | 1 1: the horizontal differences over the valid 2 x 2 block are [1, 0] per
    # row, so the mean squared gradient is (1 + 0 + 1 + 0) / 4; vertical differences vanish.
    step = torch.tensor([[0.0, 1.0, 1.0]] * 3).view(1, 1, 3, 3)
    assert ms.grad_energy(step).item() == pytest.approx(0.5)
    assert ms.grad_energy(step.transpose(-1, -2)).item() == pytest.approx(0.5)
    assert ms.grad_energy(torch.full((2, 1, 5, 5), 0.3)).tolist() == [0.0, 0.0]


def test_laplacian_variance_by_hand(ms):
    # One bright pixel at (1, 1) of a 4 x 4 image: the Laplacian on the valid 2 x 2 block is
    # [[-4, 1], [1, 0]], mean -1/2, variance (3.5^2 + 1.5^2 + 1.5^2 + 0.5^2) / 4 = 17 / 4.
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    assert ms.laplacian_var(x).item() == pytest.approx(17 / 4)


def test_blur_lowers_both_measures(ms):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 28, 28, generator=g)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    sharp, blur = ms.sharpness(x), ms.sharpness(blurred)
    assert blur["grad2"][0] < 0.5 * sharp["grad2"][0]
    assert blur["lapvar"][0] < 0.5 * sharp["lapvar"][0]


@pytest.mark.parametrize("likelihood", ["laplace", "gaussian"])
def test_refit_scale_maximizes_the_expected_log_likelihood(ms, likelihood):
    torch.manual_seed(0)
    model = build_model("multistage_vae", x_shape=(1, 8, 8), stages=1, channels=(4,), likelihood=likelihood)
    guide = model.default_guide()
    x = torch.rand(50, 1, 8, 8)
    torch.manual_seed(1)
    ms.refit_scale(model, guide, x)
    scale = pixel_scale(model.raw_scale).detach()
    torch.manual_seed(1)  # the same draw of z as the refit made
    with torch.no_grad():
        m = model.stage_means(poutine.trace(guide).get_trace(x).nodes["z"]["value"])[-1]
    err = (x - m).abs() if likelihood == "laplace" else (x - m) ** 2
    expected = err.mean(0) if likelihood == "laplace" else err.mean(0).sqrt()
    assert torch.allclose(scale, expected, rtol=1e-4)

    def total(s: torch.Tensor) -> float:
        d = torch.distributions.Laplace(m, s) if likelihood == "laplace" else torch.distributions.Normal(m, s)
        return d.log_prob(x).sum().item()

    best = total(scale)
    assert best > total(scale * 1.05) and best > total(scale / 1.05)


def test_train_then_report(ms, tmp_path, idx_root, monkeypatch):
    out = tmp_path / "out"
    args = (
        "train --datasets mnist --only vae-laplace multistage --epochs 1 --n-train 200 --n-eval 16 --k 4 "
        f"--elbo-k 2 --n-samples 16 --n-refit 50 --z-dim 4 --refine-channels 4 --refine-blocks 1 --out {out}"
    )
    monkeypatch.setattr(sys, "argv", ["multistage_sharpness.py", *args.split()])
    ms.main()
    monkeypatch.setattr(sys, "argv", ["multistage_sharpness.py", "report", "--out", str(out)])
    ms.main()
    rows = [json.loads((out / f"mnist-{label}.json").read_text()) for label in ("vae-laplace", "multistage")]
    _, grey = ms.eval_data("mnist", 16)
    assert rows[0]["sharpness test"]["grad2"][0] == pytest.approx(ms.grad_energy(grey).mean().item())
    assert "sharpness samples coarse" in rows[1] and "sharpness samples coarse" not in rows[0]
    for r in rows:
        assert math.isfinite(r["refit scale"]["bpd"][0]) and math.isfinite(r["as trained"]["bpd"][0])
        # the scale stayed frozen through training (Pyro's param statements re-enable gradients)
        assert r["as trained"]["mean scale"] == pytest.approx(0.05, rel=1e-5)
        assert r["refit scale"]["mean scale"] != pytest.approx(0.05, rel=1e-3)
    table = (out / "table.md").read_text()
    assert "| `vae-laplace` | elbo |" in table and "| `multistage` | multistage |" in table
    assert f"{1000 * rows[0]['sharpness test']['grad2'][0]:.1f}" in table
    assert (out / "samples.png").stat().st_size > 0


def test_report_without_results_says_so(ms, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["multistage_sharpness.py", "report", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="run the train subcommand first"):
        ms.main()


def test_init_scales_sets_every_pixel_scale(ms):
    model = build_model("multistage_vae", x_shape=(1, 8, 8), stages=2, channels=(4,), refine_channels=4)
    ms.init_scales(model, 0.05, freeze=True)
    for raw in (model.raw_scale, model.raw_coarse_scale):
        assert torch.allclose(pixel_scale(raw), torch.full((1, 8, 8), 0.05), rtol=1e-5)
        assert not raw.requires_grad
