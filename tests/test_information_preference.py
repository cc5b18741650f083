"""experiments/information_preference.py: the receptive-field share against a hand count and against
the PixelCNN's own dependencies (autograd), and the train -> report round trip at a tiny size."""

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch.autograd.functional import jacobian

from tests.conftest import binary_batch, randomize
from vaezoo import build_model
from vaezoo.analysis import layer_kl
from vaezoo.nets import PixelCNN, receptive_field

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "information_preference.py"
_spec = importlib.util.spec_from_file_location("information_preference", SCRIPT)
info = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(info)


def test_seen_fraction_by_hand():
    # One 3x3 masked layer on a 3x3 image sees the row above (one column either side) and the pixel
    # to the left. Earlier pixels seen / earlier pixels, pixel by pixel in raster order from (0, 1):
    by_hand = [Fraction(1, 1), Fraction(1, 2), Fraction(2, 3), Fraction(4, 4), Fraction(3, 5),
               Fraction(2, 6), Fraction(4, 7), Fraction(3, 8)]
    expected = float(sum(by_hand) / len(by_hand))
    assert abs(info.seen_fraction(receptive_field(1, 3), 3, 3) - expected) < 1e-12
    assert info.seen_fraction(receptive_field(0, 5), 4, 4) == 0.0


def test_seen_fraction_matches_the_pixelcnn_dependencies():
    """The share of earlier pixels each output depends on, from the Jacobian of a generic network."""
    height = width = 6
    for layers, kernel in ((1, 3), (2, 3), (3, 5)):
        net = PixelCNN(1, 4, layers, kernel, 1).double()
        randomize(net, seed=layers)
        x = torch.rand(1, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        jac = jacobian(lambda v, n=net: n(v), x).reshape(height * width, height * width)
        shares = [(jac[i, :i] != 0).double().mean().item() for i in range(1, height * width)]
        assert (jac.triu() == 0).all()  # no output sees itself or a later pixel
        got = info.seen_fraction(net.field, height, width)
        assert abs(got - sum(shares) / len(shares)) < 1e-12, (layers, kernel)


def test_unit_kls_split_the_layer_kl():
    model = build_model("pixel_vae", x_shape=(1, 6, 6), levels=1, z_dim=3, layers=1, kernel_size=3,
                        channels=4, condition_channels=2, upsample_channels=())
    guide = model.default_guide()
    randomize(model, guide, seed=1)
    x = binary_batch(5, shape=(1, 6, 6))
    per_unit = info.unit_kls(guide, x)
    assert per_unit.shape == (3,) and (per_unit > 0).all()
    assert per_unit.sum().item() == pytest.approx(layer_kl(model, guide, x)["z"].mean().item(), rel=1e-5)


def test_train_then_report(tmp_path, idx_root):
    out = tmp_path / "out"
    info.main(["train", "--layers", "0", "1", "--variants", "elbo", "warmup", "--n-train", "50",
               "--epochs", "1", "--batch-size", "25", "--n-eval", "6", "--k", "3", "--eval-batch", "3",
               "--out", str(out)])
    rows = [json.loads((out / f"L{n}-{v}.json").read_text()) for n in (0, 1) for v in ("elbo", "warmup")]
    for r in rows:
        assert r["n_eval"] == 6 and r["k"] == 3 and r["units"] == 32
        assert 0 <= r["active units"] <= r["units"]
        assert r["kl"][0] >= 0
        assert sum(r["unit kl"]) == pytest.approx(r["kl"][0], rel=1e-4)
    assert rows[0]["receptive field"]["pixels seen"] == 0
    # one 5x5 type-A layer: two rows of five above, two pixels to the left
    assert (rows[2]["receptive field"]["rows up"], rows[2]["receptive field"]["pixels seen"]) == (2, 12)
    info.main(["report", "--out", str(out)])
    table = (out / "table.md").read_text().splitlines()
    body = [line for line in table if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(body) == 4
    r = rows[3]
    assert f"{r['kl'][0]:.2f} ± {r['kl'][1]:.2f}" in body[3] and f"{r['nll'][0]:.2f}" in body[3]
    assert (out / "information_preference.png").stat().st_size > 0
