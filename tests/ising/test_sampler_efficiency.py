"""experiments/ising_sampler_efficiency.py: effective samples per second by hand, the L = 4 pipeline, and
a checkpoint of another L refused as proposal."""

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from vaezoo.errors import CheckpointError
from vaezoo.ising import T_C, kaufman_thermodynamics

_SPEC = importlib.util.spec_from_file_location(
    "experiments_ising_sampler_efficiency",
    Path(__file__).resolve().parents[2] / "experiments" / "ising_sampler_efficiency.py",
)
ess_module = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = ess_module  # dataclasses look their module up there
_SPEC.loader.exec_module(ess_module)


def test_effective_samples_per_second_of_a_chain_with_known_autocorrelation():
    """|m| repeats each independent value 4 times: rho(t) = 1 - t/4, tau_int = 1/2 + 3/4 + 1/2 + 1/4 = 2;
    E is independent, tau_int = 1/2. So n / (2 max tau) = n / 4."""
    gen = torch.Generator().manual_seed(0)
    n_steps, n_chains = 10_000, 4
    energy = torch.randn(n_steps, n_chains, generator=gen, dtype=torch.float64)
    abs_m = torch.randn(n_steps // 4, n_chains, generator=gen, dtype=torch.float64).repeat_interleave(4, 0)
    r = ess_module.effective_samples(energy, abs_m, seconds=2.5)
    # Sokal's window closes at M = 12 here: Var(tau_hat) ~ 2 (2M + 1) tau^2 / n (Sokal 1997, eq. 3.19).
    se_tau = math.sqrt(2 * (2 * 12 + 1) * 2.0**2 / (n_steps * n_chains))
    assert abs(r["tau_abs_m"] - 2.0) < 4 * se_tau, r
    assert abs(r["tau_energy"] - 0.5) < 4 * math.sqrt(2 * 4 * 0.25 / (n_steps * n_chains)), r
    assert r["n"] == n_steps * n_chains
    assert r["ess"] == pytest.approx(n_steps * n_chains / (2 * r["tau_abs_m"]), rel=1e-12)
    assert r["ess_per_second"] == pytest.approx(r["ess"] / 2.5, rel=1e-12)
    assert abs(r["ess"] - n_steps * n_chains / 4) < 4 * se_tau / 2.0 * n_steps * n_chains / 4


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("ess")
    ess_module.main(["--smoke", "--out", str(out), "run"])
    ess_module.main(["--smoke", "--out", str(out), "report"])
    return out


def test_smoke_pipeline_at_l4_measures_every_sampler_and_reports(smoke):
    result = json.loads((smoke / "docs" / "results" / "samplers-L4.json").read_text())
    exact = kaufman_thermodynamics(4, T_C).energy_per_site
    assert set(ess_module.SAMPLERS) <= set(result["samplers"])
    for name in ess_module.SAMPLERS:
        s = result["samplers"][name]
        assert 1 <= s["ess"] <= s["n"] and s["ess_per_second"] == pytest.approx(s["ess"] / s["seconds"])
        assert s["exact_energy"] == pytest.approx(exact) and s["energy_se"] > 0
    for name in ("swendsen_wang", "heat_bath"):  # exact chains from equilibrium starts: within the bars
        assert abs(result["samplers"][name]["z"]) < 4, result["samplers"][name]
    for name in ("neural_mh", "hybrid_mh_sw"):
        assert 0 <= result["samplers"][name]["acceptance"] <= 1
    md = (smoke / "docs" / "samplers.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| 4 |")]
    assert len(rows) == 1 + len(ess_module.SAMPLERS)  # one model row, one row per sampler
    assert (smoke / "docs" / "ess_per_second.png").stat().st_size > 0


def test_a_model_trained_at_another_l_is_refused_as_proposal(smoke):
    cfg = ess_module.Setup(docs=smoke / "docs", runs=smoke / "runs")
    model, _ = ess_module.load_trained(cfg, 4)
    assert model.L == 4
    shutil.copytree(ess_module.run_dir(cfg, 4), ess_module.run_dir(cfg, 8))
    with pytest.raises(CheckpointError, match="trained at L = 4, used as proposal at L = 8"):
        ess_module.load_trained(cfg, 8)


def test_the_fine_tuned_pair_is_loaded_measured_and_reported(smoke, tmp_path):
    smoke = shutil.copytree(smoke, tmp_path / "smoke")  # a copy: the other tests read the module's run
    cfg = ess_module.Setup(docs=smoke / "docs", runs=smoke / "runs")
    model, guide = ess_module.load_trained(cfg, 4)
    bounds_dir = tmp_path / "L4"
    bounds_dir.mkdir()
    shutil.copy(ess_module.run_dir(cfg, 4) / "checkpoint.pt", bounds_dir / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="reverse_kl.pt does not exist"):
        ess_module.load_fine_tuned(bounds_dir, 4)
    # What experiments/ising_bounds.py saves after the reverse KL: both state dicts, here shifted.
    tuned = {"model": {k: v + 0.01 for k, v in model.state_dict().items()},
             "r": {k: v - 0.01 for k, v in guide.state_dict().items()}}
    torch.save(tuned, bounds_dir / "reverse_kl.pt")
    loaded, r = ess_module.load_fine_tuned(bounds_dir, 4)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in tuned["model"].items())
    assert all(torch.equal(v, r.state_dict()[k]) for k, v in tuned["r"].items())
    with pytest.raises(CheckpointError, match="trained at L = 4, used as proposal at L = 8"):
        ess_module.load_fine_tuned(bounds_dir, 8)
    out = str(smoke)
    ess_module.main(["--smoke", "--out", out, "run-fine-tuned", "--L", "4", "--checkpoint", str(bounds_dir)])
    ess_module.main(["--smoke", "--out", out, "report"])
    result = json.loads((smoke / "docs" / "results" / "samplers-fine-tuned-L4.json").read_text())
    assert set(ess_module.SAMPLERS) <= set(result["samplers"])
    md = (smoke / "docs" / "samplers.md").read_text()
    assert "## L = 4 with the reverse-KL fine-tuned proposal" in md
    rows = [line for line in md.splitlines() if line.startswith("| 4 |")]
    assert len(rows) == 1 + 2 * len(ess_module.SAMPLERS)  # the model, then both runs' samplers
