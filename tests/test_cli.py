"""Every CLI command and benchmark script smoke-runs; a new one fails here until it is listed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaezoo.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--batch-size", "16", "--z-dim", "2", "--hidden", "8", "--no-progress"]


def run_train(out: Path, *extra: str) -> None:
    assert main(["train", "--out", str(out), "--eval-k", "4", *TINY, *extra]) == 0


def smoke_train(tmp_path):
    run_train(tmp_path / "run")
    out = tmp_path / "run"
    assert {"checkpoint.pt", "samples.png", "reconstructions.png", "loss.png", "metrics.json", "log.csv",
            "config.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_log_likelihood"]["k"] == 4 and metrics["history"][0]["epoch"] == 1
    # Active units per epoch (a count of latent units), in the history and in the CSV log.
    active = metrics["history"][0]["active_units"]
    assert active == int(active) and 0 <= active <= metrics["model"]["config"]["z_dim"]
    assert "active_units" in (out / "log.csv").read_text().splitlines()[0]


def smoke_eval(tmp_path):
    run_train(tmp_path / "run")
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "run" / "checkpoint.pt"),
                "--k",
                "3",
                "--n",
                "10",
                "--json",
                str(tmp_path / "e.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["n"] == 10 and result["mean"] < 0


def smoke_sample(tmp_path):
    run_train(tmp_path / "run")
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "run" / "checkpoint.pt"),
                "--n",
                "4",
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "s.png").stat().st_size > 0


def smoke_traverse(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "hvae", "--out", str(out), "--epochs", "1", "--batch-size", "16",
                 "--z-dims", "3", "2", "--hidden", "8", "--no-progress"]) == 0
    for layer in ("1", "z2"):
        png = tmp_path / f"t{layer}.png"
        assert main(["traverse", "--checkpoint", str(out / "checkpoint.pt"), "--layer", layer, "--n", "3",
                     "--images", "2", "--out", str(png)]) == 0
        assert png.stat().st_size > 0
    assert main(["traverse", "--checkpoint", str(out / "checkpoint.pt"), "--layer", "7"]) == 2


def smoke_gap(tmp_path):
    run_train(tmp_path / "run")
    assert main(["gap", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--n", "4", "--is-k", "20",
                 "--ais-intermediate", "5", "--ais-chains", "2", "--local-steps", "5", "--eval-k", "10",
                 "--json", str(tmp_path / "gap.json"), "--no-progress"]) == 0
    table = json.loads((tmp_path / "gap.json").read_text())
    assert table["n"] == 4


def smoke_ising(tmp_path):
    assert main(["ising", "exact", "--L", "4", "--T", "2.0", "3.0"]) == 0
    png, pt = tmp_path / "lat.png", tmp_path / "lat.pt"
    argv = ["ising", "sample", "--L", "4", "--T", "2.5", "--n", "8", "--out", str(png), "--save", str(pt)]
    assert main(argv) == 0
    assert png.stat().st_size > 0 and torch.load(pt).shape == (8, 4, 4)
    assert main(["ising", "exact", "--L", "4", "--T", "-1"]) == 2
    out = tmp_path / "ising"
    train = ["ising", "train", "--L", "4", "--levels", "1", "--temperatures", "2.0", "3.0", "--n-per-t", "20"]
    assert main([*train, "--epochs", "1", "--out", str(out), "--bound-t", "2.5", "--no-progress"]) == 0
    grid = tmp_path / "perturb.png"
    argv = ["ising", "perturb", "--checkpoint", str(out / "checkpoint.pt"), "--T", "2.5", "--n", "4"]
    argv += ["--out", str(grid)]
    assert main(argv) == 0 and grid.stat().st_size > 0


SMOKE = {
    "train": smoke_train,
    "eval": smoke_eval,
    "sample": smoke_sample,
    "traverse": smoke_traverse,
    "gap": smoke_gap,
    "ising": smoke_ising,
}
BENCHMARKS = {
    "step_time.py": ["--smoke"],
    "ising_samplers.py": ["--smoke"],
    "step_time_hier.py": ["--smoke"],
    "step_time_nvae.py": ["--smoke"],
    "is_throughput.py": ["--smoke"],
    "data_parallel.py": ["--smoke"],
    "step_time_vrnn.py": ["--smoke"],
    "step_time_mvae.py": ["--smoke"],
    "step_time_flows.py": ["--smoke"],
    "step_time_adversarial.py": ["--smoke"],
    "step_time_objectives.py": ["--smoke"],
    "step_time_coarse.py": ["--smoke"],
}


def test_every_command_has_a_smoke_test():
    assert set(COMMANDS) == set(SMOKE), "list each new command in SMOKE with a smoke run"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_command_smoke(name, idx_root, tmp_path):
    SMOKE[name](tmp_path)


def test_guide_and_objective_flags(idx_root, tmp_path):
    run_train(
        tmp_path / "r",
        "--guide",
        "amortized",
        "--guide-hidden",
        "5",
        "--objective",
        "elbo",
        "--kl-warmup",
        "1",
    )
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["guide"]["config"]["hidden"] == [5] and saved["objective"]["config"]["kl_warmup"] == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "nope"], "unknown model 'nope'; registered models are"),
        (["eval", "--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
        (
            ["train", "--dataset", "mnist", "--data-dir", "/nonexistent", "--no-progress"],
            "mnist data not found",
        ),
    ],
)
def test_bad_input_gives_one_message_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VAEZOO_DATA", str(tmp_path))
    assert main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "vaezoo", "--help"], capture_output=True, text=True, check=True
    )
    assert all(name in out.stdout for name in COMMANDS)
    out = subprocess.run(
        [sys.executable, "-m", "vaezoo", "train", "--model", "vae", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--z-dim" in out.stdout and "--kl-warmup" in out.stdout


def test_every_benchmark_is_listed_and_runs():
    # Scripts, not the helper modules they import (benchmarks/hier_references.py).
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py") if "__main__" in p.read_text()}
    assert scripts == set(BENCHMARKS), "list each new benchmark in BENCHMARKS with its smoke flags"
    for script, flags in BENCHMARKS.items():
        out = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *flags],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "ratio" in out.stdout and "ran:" in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["train", "eval", "sample", "gap", "traverse"])
def test_device_cuda_without_cuda_is_refused_before_any_work(name, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VAEZOO_DATA", str(tmp_path / "no-data"))  # loading data would fail otherwise
    argv = [name, "--device", "cuda"]
    argv += ["--out", str(tmp_path / "o")] if name == "train" else ["--checkpoint", str(tmp_path / "none.pt")]
    argv += ["--layer", "1"] if name == "traverse" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--device cuda: CUDA is not available" in err and "available here: cpu" in err
    assert "Traceback" not in err and "data not found" not in err and "does not exist" not in err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_device_and_logger_flags(idx_root, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    run_train(tmp_path / "r", "--device", "cpu", "--logger", "tensorboard", "--epochs", "2")
    out = tmp_path / "r"
    assert list(out.glob("events.out.tfevents.*")) and not (out / "log.csv").exists()
    assert json.loads((out / "metrics.json").read_text())["train"]["device"] == "cpu"
    ckpt = str(out / "checkpoint.pt")
    argv = ["eval", "--checkpoint", ckpt, "--k", "2", "--n", "4", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0


def test_logger_tensorboard_without_the_package_names_the_install(idx_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["train", "--out", str(tmp_path / "o"), "--logger", "tensorboard", *TINY]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorboard" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()
