"""Every experiment script smoke-runs; a new one fails here until it is listed."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Arguments per script; "{out}" becomes a temporary folder. ising_block_spin.py has no smoke mode yet
# (its stages write docs/ising/results), so only its command line is checked.
EXPERIMENTS = {
    "hierarchies.py": ["--smoke", "--out", "{out}"],
    "ising_block_spin.py": ["--help"],
    "estimator_variance.py": ["--smoke", "--json", "{out}/variance.json"],
}


def test_every_experiment_is_listed():
    assert {p.name for p in (ROOT / "experiments").glob("*.py")} == set(EXPERIMENTS)


@pytest.mark.parametrize("script", sorted(EXPERIMENTS))
def test_experiment_smoke(script, tmp_path, idx_root):
    args = [a.replace("{out}", str(tmp_path)) for a in EXPERIMENTS[script]]
    cmd = [sys.executable, str(ROOT / "experiments" / script), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
