"""Every experiment script smoke-runs; a new one fails here until it is listed."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {"hierarchies.py": ["--smoke"]}


def test_every_experiment_is_listed():
    assert {p.name for p in (ROOT / "experiments").glob("*.py")} == set(EXPERIMENTS)


@pytest.mark.parametrize("script", sorted(EXPERIMENTS))
def test_experiment_smoke(script, tmp_path, idx_root):
    cmd = [sys.executable, str(ROOT / "experiments" / script), *EXPERIMENTS[script], "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
