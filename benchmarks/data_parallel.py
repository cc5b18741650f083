"""Data-parallel throughput: one training epoch and one IS evaluation with 1 and with N processes.

Each configuration is a fresh ``torchrun --standalone --nproc-per-node N`` launch of this file in
worker mode; the worker trains the VAE for one epoch on the first ``--train-size`` MNIST images
(``fit``'s own per-epoch seconds, so process start-up is not counted) and then times the
importance-sampled log-likelihood of ``--test-size`` test images with ``split=True`` between two
barriers. Threads per process are set with ``OMP_NUM_THREADS`` and printed, because on a machine
with C cores one process may use C threads: the fair comparisons are 1 process x C threads against
C processes x 1 thread, and 1 x 1 against N x 1 for the scaling itself.

    python benchmarks/data_parallel.py                         # 1x1, 1x2 and 2x1 on 10k images
    python benchmarks/data_parallel.py --smoke                 # a tiny run for the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from vaezoo import ELBO, VAE, data, fit, log_likelihood, parallel
    from vaezoo.cli.base import subset, test_split

    if args.smoke:  # random binary images: the test suite need not have MNIST
        g = torch.Generator().manual_seed(0)
        train = torch.bernoulli(torch.full((args.train_size, 1, 28, 28), 0.3), generator=g)
        test = torch.bernoulli(torch.full((args.test_size, 1, 28, 28), 0.3), generator=g)
    else:
        train = subset(data.load("mnist", "train", "dynamic", args.data_dir, False, 0), args.train_size)
        test = test_split("mnist", "dynamic", args.data_dir, False, args.test_size)
    torch.manual_seed(0)
    model = VAE(x_shape=(1, 28, 28))
    guide = model.default_guide()
    history = fit(
        model, guide, train, ELBO(), epochs=1, batch_size=args.batch_size, progress=False, device="cpu"
    )
    w = parallel.world()
    if w.size > 1:
        dist.barrier()
    t0 = time.perf_counter()
    estimate = log_likelihood(model, guide, test, k=args.k, batch_size=100, split=True)
    if w.size > 1:
        dist.barrier()
    seconds = time.perf_counter() - t0
    if w.main:
        print(
            json.dumps(
                {
                    "epoch_seconds": history[0]["seconds"],
                    "eval_seconds": seconds,
                    "train_loss": history[0]["train_loss"],
                    "test_ll": estimate.mean,
                }
            )
        )


def launch(processes: int, threads: int, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    flags = [
        "--train-size",
        str(args.train_size),
        "--test-size",
        str(args.test_size),
        "--k",
        str(args.k),
        "--batch-size",
        str(args.batch_size),
    ] + (["--data-dir", args.data_dir] if args.data_dir else [])
    flags += ["--smoke"] if args.smoke else []
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        __file__,
        "--worker",
        *flags,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--batch-size", type=int, default=100, help="global batch of a training step")
    parser.add_argument("--processes", type=int, default=2, help="N of the N-process runs")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.smoke:
        args.train_size, args.test_size, args.k = 200, 20, 4
    n = args.processes
    if n < 2:
        parser.error("--processes must be at least 2 (the runs compare it with 1 process)")
    images = "random binary images (smoke)" if args.smoke else "MNIST"
    print(
        f"ran: VAE 784-200-200-50 on the first {args.train_size} {images} training images, 1 epoch, "
        f"global batch {args.batch_size}, fused Adam; IS k={args.k} on {args.test_size} test images, "
        f"batch 100; gloo on CPU; {os.cpu_count()} CPUs, {platform.machine()}, {platform.python_version()}"
    )
    configs = [(1, 1), (n, 1)] if args.smoke else [(1, 1), (1, n), (n, 1)]
    results = {c: launch(*c, args) for c in configs}
    base = results[(1, 1)]
    for (p, t), r in results.items():
        epoch, evaluation = r["epoch_seconds"], r["eval_seconds"]
        print(
            f"  {p} process(es) x {t} thread(s): epoch {epoch:7.2f} s "
            f"(ratio to 1x1 {epoch / base['epoch_seconds']:.2f}), IS eval {evaluation:7.2f} s "
            f"(ratio to 1x1 {evaluation / base['eval_seconds']:.2f}); "
            f"train loss {r['train_loss']:.2f}, test log p(x) {r['test_ll']:.2f}"
        )


if __name__ == "__main__":
    main()
