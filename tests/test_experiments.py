"""Every experiment script smoke-runs; a new one fails here until it is listed."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Arguments per script, or a list of invocations run in order; "{out}" becomes a temporary folder.
# ising_block_spin.py runs its whole pipeline for one variant, each stage a separate command.
_ISING = ["--smoke", "--out", "{out}"]
EXPERIMENTS = {
    "hierarchies.py": ["--smoke", "--out", "{out}"],
    "ising_block_spin.py": [
        [*_ISING, "train", "--L", "4", "--variant", "rg"],
        [*_ISING, "eval-l4", "--variant", "rg"],
        [*_ISING, "train", "--L", "16", "--variant", "rg"],
        [*_ISING, "eval-l16", "--variant", "rg"],
        [*_ISING, "report"],
    ],
    "estimator_variance.py": ["--smoke", "--json", "{out}/variance.json"],
    "vrnn.py": ["--smoke", "--json", "{out}/vrnn.json"],
    "mvae.py": ["--smoke", "--out", "{out}"],
    "rate_distortion.py": [
        "train --epochs 1 --n-train 300 --n-eval 20 --k 10 --elbo-k 2 --only elbo-beta1 info_vae-lam100 "
        "--out {out}".split(),
        ["report", "--out", "{out}"],
    ],
    "disentanglement.py": [["train", "--smoke", "--out", "{out}"], ["report", "--out", "{out}"]],
    # every guide trained, evaluated and reported in three commands
    "flows.py": [["--smoke", "--out", "{out}", stage] for stage in ("train", "eval", "report")],
    "vqvae.py": [
        ["--smoke", "--out", "{out}", "train", "--reference"],
        ["--smoke", "--out", "{out}", "report"],
    ],
    "likelihood_free.py": ["--smoke", "--out", "{out}"],
    "gibbs_bottom_layer.py": [
        ["--smoke", "--runs", "{out}/runs", "--out", "{out}/docs", "--md", "{out}/gibbs.md", stage]
        for stage in ("train", "eval", "report")
    ],
    "van.py": [["--smoke", "--out", "{out}", "run"], ["--smoke", "--out", "{out}", "report"]],
    "ising_bounds.py": [
        ["--smoke", "--out", "{out}", "run", "--L", "16"],
        ["--smoke", "--out", "{out}", "run", "--L", "16", "--resume", "--rkl-lr", "1e-4"],
        ["--smoke", "--out", "{out}", "report"],
    ],
    "information_preference.py": [
        "train --layers 0 1 --n-train 50 --epochs 1 --batch-size 25 --n-eval 6 --k 3 --eval-batch 3 "
        "--out {out}".split(),
        ["report", "--out", "{out}"],
    ],
    "multistage_sharpness.py": [
        "train --datasets mnist --only vae-gaussian multistage --epochs 1 --n-train 200 --n-eval 16 --k 4 "
        "--elbo-k 2 --n-samples 16 --n-refit 50 --z-dim 4 --refine-channels 4 --refine-blocks 1 "
        "--out {out}".split(),
        ["report", "--out", "{out}"],
    ],
}
# Files a script must have written under "{out}" (with lines they must contain), and repository folders
# it must leave untouched. The README's L = 4 table lists exactly the variants whose results the report
# read, so its header shows that it read the smoke run's results and nothing else.
OUTPUTS = {
    "rate_distortion.py": {
        "table.md": [
            "| objective | rate R (nats) | distortion D (nats) | -ELBO = D + R | NLL (IS) |"
        ],
        "rate_distortion.png": [],
        "elbo-beta1.json": [],
    },
    "ising_block_spin.py": {
        "docs/README.md": [
            "| T | exact entropy / site | NLL / site: binary, RG guide | KL / site: binary, RG guide |",
            "## L = 16: free-energy upper bound per site vs Kaufman's exact F",
        ],
        "docs/observables_vs_T.png": [],
        "docs/perturb-rg-T2.269.png": [],
        **{f"docs/results/{s}-rg.json": [] for s in ("train-L4", "eval-L4", "train-L16", "eval-L16")},
        "runs/L4-rg/checkpoint.pt": [],
        "runs/L16-rg/checkpoint.pt": [],
    },
}
OUTPUTS["mvae.py"] = {
    f"{d}.{ext}": [] for d in ("mnist-label", "fashion-mnist-label", "mnist-flip") for ext in ("json", "png")
}
OUTPUTS["vqvae.py"] = {"vqvae-K16.json": [], "vae-reference.json": [], "results.md": []}
OUTPUTS["disentanglement.py"] = {"runs/elbo-seed0.json": [], "results.md": []}
_GUIDES = ("amortized", "planar", "iaf", "sylvester")
OUTPUTS["flows.py"] = {
    "docs/README.md": ["| guide | parameters (model + guide) | budget | test ELBO | test NLL (nats) |"],
    **{f"docs/results/{stage}-{g}.json": [] for g in _GUIDES for stage in ("train", "eval")},
    **{f"docs/samples-{g}.png": [] for g in _GUIDES},
    **{f"runs/{g}/checkpoint.pt": [] for g in _GUIDES},
}
UNTOUCHED = {"ising_block_spin.py": ["docs/ising", "runs/ising"], "flows.py": ["docs/flows", "runs/flows"]}
OUTPUTS["likelihood_free.py"] = {"results.json": [], "README.md": [], "posterior_marginals.png": []}
OUTPUTS["gibbs_bottom_layer.py"] = {
    "gibbs.md": ["### `markov_hvae-5-bn-wu`", "### `markov_hvae-3`"],
    "docs/scores_vs_t.png": [],
    "docs/eval-markov_hvae-3.json": [],
    "runs/classifier.pt": [],
}
_C2F = ["--smoke", "--out", "{out}/docs", "--runs-dir", "{out}/runs"]
EXPERIMENTS["coarse_to_fine_nll.py"] = [
    ["train", *_C2F, "--epochs", "1", "--n-train", "40"],
    ["eval", *_C2F, "--n-eval", "8", "--k", "4", "--elbo-k", "2"],
    ["report", *_C2F],
]
OUTPUTS["coarse_to_fine_nll.py"] = {
    "docs/nll.md": ["| run | trained by | test NLL (IS) | test -ELBO | s / epoch | parameters | samples |"],
    **{f"docs/samples/{r}.png": [] for r in ("vae", "lvae", "pixel_vae-1", "pixel_vae-2")},
    "docs/results/sequential_vae-elbo.json": [],
}
OUTPUTS["van.py"] = {"van.md": [], "results/van-L4-T2.0000.json": []}
UNTOUCHED["van.py"] = ["docs/ising"]
EXPERIMENTS["ising_sampler_efficiency.py"] = [
    ["--smoke", "--out", "{out}", stage] for stage in ("run", "report")
]
OUTPUTS["ising_sampler_efficiency.py"] = {
    "docs/samplers.md": ["| L | levels | training lattices (SW) | epochs | training s | test ELBO / site |"],
    "docs/ess_per_second.png": [],
    "docs/results/samplers-L4.json": [],
    "runs/ess-L4-sf/checkpoint.pt": [],
}
UNTOUCHED["ising_sampler_efficiency.py"] = ["docs/ising", "runs/ising"]
OUTPUTS["ising_bounds.py"] = {
    "bounds.md": ["## L = 16", "## What the numbers say"], "results/bounds-L16.json": []
}
UNTOUCHED["ising_bounds.py"] = ["docs/ising"]
OUTPUTS["information_preference.py"] = {
    "L1-warmup.json": [], "table.md": [], "information_preference.png": []
}


def test_every_experiment_is_listed():
    assert {p.name for p in (ROOT / "experiments").glob("*.py")} == set(EXPERIMENTS)


def _snapshot(folders: list[str]) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file under the repository folders (missing folders: none)."""
    return {
        str(p.relative_to(ROOT)): (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in folders
        for p in (ROOT / folder).rglob("*")
        if p.is_file()
    }


# Smoke runs of a minute or more whose pipeline a fast test of their own also covers (on fake data):
# they run with the slow tests, so that the default run stays within its budget.
SLOW_SMOKE = {
    "coarse_to_fine_nll.py": "tests/test_coarse_to_fine_nll.py",
    "gibbs_bottom_layer.py": "tests/test_gibbs_bottom_layer.py",
}


@pytest.mark.parametrize(
    "script",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SMOKE else s for s in sorted(EXPERIMENTS)],
)
def test_experiment_smoke(script, tmp_path, idx_root):
    runs = EXPERIMENTS[script]
    runs = [runs] if isinstance(runs[0], str) else runs
    before = _snapshot(UNTOUCHED.get(script, []))
    for run in runs:
        args = [a.replace("{out}", str(tmp_path)) for a in run]
        cmd = [sys.executable, str(ROOT / "experiments" / script), *args]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    outputs = OUTPUTS.get(script, {})
    missing = [f for f in outputs if not (tmp_path / f).is_file()]
    assert not missing, f"{script} did not write {missing} under {tmp_path}"
    for name, lines in outputs.items():
        text = (tmp_path / name).read_text() if lines else ""
        assert not [line for line in lines if line not in text.splitlines()], f"{name}:\n{text}"
    assert _snapshot(UNTOUCHED.get(script, [])) == before, f"{script} wrote into {UNTOUCHED[script]}"
