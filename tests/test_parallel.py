"""Data parallelism: N processes (gloo on the CPU, launched as torchrun would) train as one process does.

Each multi-process test starts the ranks itself with torchrun's environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ...), runs a short script in each and compares what the ranks
wrote. Splitting rules that need no processes are tested directly.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vaezoo import parallel
from vaezoo.errors import ConfigError
from vaezoo.parallel import World

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = textwrap.dedent(
    """
    import dataclasses, math, os, sys
    import pyro, pyro.distributions as dist, torch
    from pyro.nn import PyroModule
    from torch import nn
    from tests.conftest import binary_batch
    from vaezoo import ELBO, VAE, fit, parallel
    from vaezoo.inference.fit import parameters
    from vaezoo.registry import register_guide

    RANK, OUT = int(os.environ.get("RANK", "0")), sys.argv[1]


    @dataclasses.dataclass(frozen=True)
    class PointConfig:
        pass


    @register_guide("point_for_this_test", PointConfig)
    class PointGuide(PyroModule):
        # z = f(x) exactly: the ELBO is then a deterministic function of the data and weights, so one
        # step on 2 x 25 datapoints and one on 50 differ only in the order of float sums.
        def __init__(self):
            super().__init__()
            self.config = PointConfig()
            self.net = nn.Linear(36, 3)

        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Delta(self.net(x.flatten(1))).to_event(1))


    def save(name, tensors):
        torch.save([t.detach().clone() for t in tensors], os.path.join(OUT, f"{name}-rank{RANK}.pt"))
    """
)

DETERMINISTIC = PRELUDE + textwrap.dedent(
    """
    torch.manual_seed(0)
    model, guide = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(16,)), PointGuide()
    data = binary_batch(100, shape=(1, 6, 6), seed=4)
    fit(model, guide, data, ELBO(), epochs=2, batch_size=50, progress=False)
    save("deterministic", parameters(model, guide))
    """
)

STOCHASTIC = PRELUDE + textwrap.dedent(
    """
    from vaezoo.inference import ScoreFunction
    torch.manual_seed(0)
    model = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(16,))
    guide = model.default_guide()
    objective = ScoreFunction(ELBO(), baseline="avg")
    data = binary_batch(96, shape=(1, 6, 6), seed=4)
    history = fit(model, guide, data, objective, epochs=3, batch_size=32, progress=False)
    save("stochastic", parameters(model, guide) + list(objective.state_dict().values()))
    save("history", [torch.tensor([h["train_loss"] for h in history])])
    nvil = ScoreFunction(ELBO(), baseline="nvil")  # a baseline network with lazily shaped weights
    fit(model, guide, data, nvil, epochs=1, batch_size=32, progress=False)
    save("nvil", parameters(model, guide) + list(nvil.state_dict().values()))
    fit(model, guide, data, ELBO(), epochs=1, batch_size=32, progress=False, compile="fx")
    save("compiled", parameters(model, guide))
    """
)

DYING = PRELUDE + textwrap.dedent(
    """
    die_at, epochs = float(sys.argv[2]), int(sys.argv[3])

    class DyingELBO(ELBO):
        def differentiable_loss(self, model, guide, x, progress=math.inf):
            if RANK == 1 and progress >= die_at:
                os._exit(3)  # killed: no cleanup, no message
            return super().differentiable_loss(model, guide, x, progress=progress)

    torch.manual_seed(0)
    model = VAE(x_shape=(1, 6, 6), z_dim=3, hidden=(16,))
    data = binary_batch(96, shape=(1, 6, 6), seed=4)
    history = fit(model, model.default_guide(), data, DyingELBO(), epochs=epochs, batch_size=32,
                  out=OUT, progress=False)
    save("resumed", [torch.tensor([h[k] for h in history]) for k in ("epoch", "train_loss")])
    """
)

EVALUATION = PRELUDE + textwrap.dedent(
    """
    from vaezoo import log_likelihood
    from vaezoo.registry import build_guide, build_model
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = build_model("linear_gaussian", x_shape=(1, 2, 3), z_dim=2)
    x = model.x_dist(torch.randn(7, 2)).sample()
    parallel.join(torch.device("cpu"))
    estimate = log_likelihood(model, build_guide("exact", model), x, k=3, batch_size=2, split=True)
    save("evaluation", [estimate.per_datapoint, model.log_marginal(x)])
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str, world: int, out: Path, *args: str, timeout: float = 240) -> list[tuple[int, str]]:
    """Run ``script`` in ``world`` processes as torchrun would; ``(return code, stderr)`` of each rank."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "OMP_NUM_THREADS": "1",
            "VAEZOO_DIST_TIMEOUT": "60",
            "PYTHONPATH": str(ROOT),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, str(out), *args],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        results.append((p.returncode, err))
    return results


def loaded(out: Path, name: str, rank: int) -> list[torch.Tensor]:
    return torch.load(out / f"{name}-rank{rank}.pt")


def assert_ran(results):
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"


def test_two_processes_take_the_step_of_one_process_with_their_combined_batch(tmp_path):
    (tmp_path / "one").mkdir()
    assert_ran(launch(DETERMINISTIC, 2, tmp_path))
    assert_ran(launch(DETERMINISTIC, 1, tmp_path / "one"))
    two = [loaded(tmp_path, "deterministic", r) for r in (0, 1)]
    one = loaded(tmp_path / "one", "deterministic", 0)
    for a, b in zip(two[0], two[1], strict=True):
        assert torch.equal(a, b)  # the ranks hold the same parameters, bit for bit
    # Weights are O(1) and float32 rounds at 6e-8 of that; sums in another order over four steps
    # differ by a few such roundings (1.5e-8 was seen), far below the 4e-3 the steps move a weight.
    for a, b in zip(two[0], one, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_ranks_and_objective_state_stay_in_sync_and_training_improves(tmp_path):
    assert_ran(launch(STOCHASTIC, 2, tmp_path))
    for name in ("stochastic", "nvil", "compiled"):
        ranks = [loaded(tmp_path, name, r) for r in (0, 1)]
        assert len(ranks[0]) > 2
        for a, b in zip(*ranks, strict=True):
            assert torch.equal(a, b)
    (losses,) = loaded(tmp_path, "history", 0)
    assert torch.equal(losses, loaded(tmp_path, "history", 1)[0])  # every rank reports the global mean
    assert losses[-1] < losses[0]


def test_a_killed_two_process_run_stops_every_rank_and_resumes_on_any_number_of_processes(tmp_path):
    results = launch(DYING, 2, tmp_path, "1.5", "3")  # rank 1 dies half-way through epoch 2
    assert results[1][0] == 3
    assert results[0][0] != 0
    assert "another process stopped" in results[0][1], results[0][1][-2000:]
    assert "run the same command again to resume" in results[0][1]
    assert (tmp_path / "checkpoint.pt").exists()
    # Epoch 1's checkpoint resumes on one process, then (with a longer run) on two again.
    assert_ran(launch(DYING, 1, tmp_path, "inf", "3"))
    epochs, losses = loaded(tmp_path, "resumed", 0)
    assert epochs.tolist() == [1, 2, 3] and torch.isfinite(losses).all()
    assert_ran(launch(DYING, 2, tmp_path, "inf", "4"))
    epochs2, losses2 = loaded(tmp_path, "resumed", 0)
    assert epochs2.tolist() == [1, 2, 3, 4] and torch.equal(losses2[:3], losses)


def test_evaluation_split_over_ranks_returns_every_datapoint_in_order(tmp_path):
    # The exact posterior as proposal makes every importance weight p(x): estimates equal log p(x).
    assert_ran(launch(EVALUATION, 2, tmp_path))
    for rank in (0, 1):
        estimate, exact = loaded(tmp_path, "evaluation", rank)
        assert estimate.shape == (7,)
        torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-9)


def test_the_ranks_together_draw_the_batches_of_one_process():
    n, batch, world = 23, 6, 3
    one = parallel.rank_order(n, 5, 2, World())
    assert sorted(one) == list(range(n))
    shares = [parallel.rank_order(n, 5, 2, World(r, world, r)) for r in range(world)]
    per_rank = parallel.check_split(batch, n, World(0, world))
    assert per_rank == 2
    padded = one + one[: math.ceil(n / world) * world - n]
    for step in range(math.ceil(n / world / per_rank)):
        together = sorted(i for share in shares for i in share[step * per_rank : (step + 1) * per_rank])
        assert together == sorted(padded[step * batch : (step + 1) * batch])
    assert parallel.rank_order(n, 5, 3, World()) != one  # re-seeded every epoch


def test_evaluation_shards_cover_the_data_once():
    for n, world in [(10, 3), (2, 4), (7, 1)]:
        covered = [i for r in range(world) for i in parallel.shard(n, World(r, world))]
        assert covered == list(range(n))


def test_batch_and_process_count_that_do_not_fit_are_refused_with_the_fix():
    divides = r"processes that divides it \(1, 2, 4, 5, 10, 20, 25, 50\)"
    with pytest.raises(
        ConfigError, match=rf"does not split evenly.*multiple of 3 \(e\.g\. 99, 102\).*{divides}"
    ):
        parallel.check_split(100, 1000, World(0, 3))
    with pytest.raises(ConfigError, match=r"4 processes for 3 datapoints.*at most 3"):
        parallel.check_split(100, 3, World(0, 4))
    assert parallel.check_split(100, 3, World()) == 100


def test_a_bad_timeout_setting_is_refused(monkeypatch):
    monkeypatch.setenv("VAEZOO_DIST_TIMEOUT", "soon")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="VAEZOO_DIST_TIMEOUT='soon'"):
        parallel.join(torch.device("cpu"))


def torchrun(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m vaezoo ...`` with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "VAEZOO_DIST_TIMEOUT": "60"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, "-m", "vaezoo", *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


def test_torchrun_trains_and_evaluates_from_the_command_line_with_one_writer(tmp_path, idx_root):
    out = tmp_path / "run"
    common = ["--no-progress", "--device", "cpu"]
    train = torchrun(
        tmp_path,
        "train",
        "--z-dim",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--test-size",
        "10",
        "--eval-k",
        "2",
        "--out",
        str(out),
        *common,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert train.stdout.count("test NLL") == 1 and train.stdout.count("wrote ") == 1
    assert (out / "checkpoint.pt").exists() and (out / "metrics.json").exists() and (out / "log.csv").exists()
    # (torchrun's own parser would take eval's --n for an abbreviation of its --nnodes: all 32 images)
    evaluation = torchrun(tmp_path, "eval", "--checkpoint", str(out / "checkpoint.pt"), "--k", "3", *common)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert evaluation.stdout.count("test NLL") == 1 and "n=32" in evaluation.stdout
    odd = torchrun(tmp_path, "train", "--batch-size", "15", "--out", str(tmp_path / "odd"), *common)
    assert odd.returncode != 0
    assert "--batch-size 15" in odd.stderr and "multiple of 2 (e.g. 14, 16)" in odd.stderr
