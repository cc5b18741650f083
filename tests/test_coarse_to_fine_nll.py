"""experiments/coarse_to_fine_nll.py at a tiny size: train, eval and report on fake MNIST, and the numbers
the report prints are those eval computed with vaezoo's estimators."""

import json
import sys
from pathlib import Path

import pytest
import torch

from vaezoo import build_objective, log_likelihood

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import coarse_to_fine_nll as c2f  # noqa: E402

RUNS = ["vae", "pixel_vae-2", "sequential_vae-stepwise"]


def test_train_eval_report_round_trip(tmp_path, idx_root):
    common = [
        "--smoke",
        "--out",
        str(tmp_path / "docs"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--runs",
        *RUNS,
    ]
    c2f.main(["train", *common, "--epochs", "2", "--n-train", "40"])
    c2f.main(["eval", *common, "--n-eval", "6", "--k", "4", "--elbo-k", "2"])
    page = tmp_path / "docs" / "nll.md"
    page.write_text(f"# kept title\n\n{c2f.MARKER}\nold table\n{c2f.MARKER}\nkept text\n")
    c2f.main(["report", *common])
    text = page.read_text()
    assert text.startswith("# kept title") and text.endswith("kept text\n") and "old table" not in text
    for run in RUNS:
        r = json.loads((tmp_path / "docs" / "results" / f"{run}.json").read_text())
        assert r["n_train"] == 40 and len(r["epoch_seconds"]) == 2 and r["n_eval"] == 6 and r["k"] == 4
        row = next(line for line in text.splitlines() if line.startswith(f"| `{run}`"))
        assert f"{r['nll'][0]:.2f} ± {r['nll'][1]:.2f}" in row and f"{r['-elbo'][0]:.2f}" in row
        png = tmp_path / "docs" / "samples" / f"{run}.png"
        assert png.stat().st_size < 100_000
    # A second train skips the finished runs rather than retraining them.
    before = (tmp_path / "runs" / "vae" / "train.json").stat().st_mtime_ns
    c2f.main(["train", *common, "--epochs", "2", "--n-train", "40"])
    assert (tmp_path / "runs" / "vae" / "train.json").stat().st_mtime_ns == before


def test_evaluate_reports_vaezoo_estimates_and_their_standard_errors():
    model, guide = c2f.build(c2f.BY_NAME["sequential_vae-stepwise"], smoke=True)
    x = torch.bernoulli(torch.full((7, *model.x_shape), 0.4), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    got = c2f.evaluate(model, guide, x, k=3, elbo_k=2, batch_size=4)
    torch.manual_seed(5)
    with torch.no_grad():
        bound = torch.cat(
            [build_objective("elbo", num_particles=2).bound(model, guide, xb) for xb in x.split(4)]
        )
    ll = log_likelihood(model, guide, x, k=3, batch_size=4, max_elements=2**19)
    nll = -ll.per_datapoint
    assert got["-elbo"][0] == pytest.approx(-bound.mean().item(), rel=1e-6)
    assert got["nll"][0] == pytest.approx(nll.mean().item(), rel=1e-6)
    assert got["nll"][1] == pytest.approx(
        ((nll - nll.mean()) ** 2).sum().item() ** 0.5 / (6 * 7) ** 0.5, rel=1e-5
    )


def test_unknown_run_is_named():
    with pytest.raises(SystemExit, match="unknown runs \\['nope'\\]"):
        c2f.main(["train", "--runs", "nope"])
