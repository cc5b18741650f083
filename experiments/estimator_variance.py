"""How noisy is the encoder's gradient? Signal-to-noise of seven estimators on one trained VAE and batch.

The estimator-variance table of issue 3: for a VAE (the Cremer et al. 2018 architecture trained on
MNIST) and one fixed batch of test images, the gradient of the batch-mean training objective is drawn
``--n`` times with :func:`vaezoo.analysis.gradient_variance`, and the statistics of the guide's
(encoder's) parameter group are reported:

==================  ===========================================================================
ELBO                Reparam (pathwise, closed-form KL); ScoreFunction with baseline none / avg /
                    NVIL (Williams 1992; Mnih & Gregor 2014)
IWAE, k=5           pathwise; DReG (Tucker et al. 2019); ScoreFunction with VIMCO (Mnih & Rezende 2016)
==================  ===========================================================================

The model and the guide are never updated. Baselines whose state learns over steps are warmed up
first, on training images (not the measured batch), without touching the model or the guide:

- ``avg``: ``--warmup-steps`` evaluations of the training loss, each folding that batch's mean
  learning signal into the running average, as training steps would;
- ``nvil``: the same number of Adam steps (lr 1e-3) on the baseline network alone, minimizing its
  squared error (the estimator's own auxiliary loss); its running-average part is updated too.

During the ``--n`` draws the baselines keep updating their running averages (as in training); the
NVIL network is not stepped. Statistics, per group (see :class:`~vaezoo.inference.GradientStats`):
``norm SNR`` = ||mean g|| / sqrt(trace Cov g); ``debiased`` replaces ||mean g||^2 by
||mean g||^2 - trace Cov / n (the sample mean's own noise inflates its norm: an estimator with no
signal would show norm SNR ~ 1/sqrt(n)); ``coord SNR`` = mean over coordinates of |mean g_i| / sd(g_i),
whose floor for a zero-mean coordinate is ~ 0.8/sqrt(n).

    OMP_NUM_THREADS=1 python experiments/estimator_variance.py --checkpoint runs/cremer-mnist/checkpoint.pt \\
        --n 1000 --batch-size 100 --json docs/gap/estimator_variance.json
    OMP_NUM_THREADS=1 python experiments/estimator_variance.py --smoke        # seconds, untrained, fake data

References:
    - Rainforth et al. (2018), Tighter Variational Bounds are Not Necessarily Better, ICML.
    - Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators for Monte Carlo
      Objectives, ICLR.
    - Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks, ICML.
    - Mnih & Rezende (2016), Variational Inference for Monte Carlo Objectives, ICML.
    - Williams (1992), Simple Statistical Gradient-Following Algorithms for Connectionist
      Reinforcement Learning, Machine Learning 8.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyro
import torch

from vaezoo import ELBO, VAE, checkpoint, data
from vaezoo.analysis import gradient_variance
from vaezoo.inference import IWAE, Reparam, ScoreFunction

EVAL_SEED = 1234  # the project's fixed binarization of the test set (vaezoo/cli/base.py)

ESTIMATORS: list[tuple[str, str, Callable[[], object]]] = [
    ("ELBO", "Reparam (pathwise)", lambda: ELBO()),
    ("ELBO", "ScoreFunction, no baseline", lambda: ScoreFunction(ELBO(), baseline="none")),
    ("ELBO", "ScoreFunction, avg baseline", lambda: ScoreFunction(ELBO(), baseline="avg")),
    ("ELBO", "ScoreFunction, NVIL baseline", lambda: ScoreFunction(ELBO(), baseline="nvil")),
    ("IWAE k=5", "pathwise", lambda: IWAE(k=5)),
    ("IWAE k=5", "DReG", lambda: IWAE(k=5, dreg=True)),
    ("IWAE k=5", "ScoreFunction, VIMCO", lambda: ScoreFunction(IWAE(k=5), baseline="vimco")),
]


def load(args) -> tuple[object, object, torch.Tensor, Iterator[torch.Tensor], str]:
    """Model, guide, the measured batch and an endless stream of warm-up batches (other images)."""
    if args.smoke or not args.checkpoint:
        torch.manual_seed(0)
        shape = (1, 8, 8) if args.smoke else (1, 28, 28)
        model = VAE(
            x_shape=shape,
            z_dim=4 if args.smoke else 50,
            hidden=(16,) if args.smoke else (200, 200),
            activation="elu",
        )
        guide = model.default_guide()
        g = torch.Generator().manual_seed(1)
        x = torch.bernoulli(torch.full((args.batch_size, *shape), 0.3), generator=g)

        def fake() -> Iterator[torch.Tensor]:
            while True:
                yield torch.bernoulli(torch.full((args.batch_size, *shape), 0.3), generator=g)

        return model, guide, x, fake(), f"untrained VAE z={model.z_dim}, random binary {shape} images"
    model, guide, _, payload = checkpoint.restore(args.checkpoint)
    cfg = payload.get("meta", {}).get("train_config", {})
    dataset = cfg.get("dataset", "mnist")
    test = data.load(dataset, "test", "static", cfg.get("data_dir"), seed=EVAL_SEED)
    x = test[torch.arange(args.batch_size)][0]
    train = data.load(dataset, "train", "dynamic", cfg.get("data_dir"))
    generator = torch.Generator().manual_seed(args.seed + 1)

    def stream() -> Iterator[torch.Tensor]:
        while True:
            yield from data.batches(train, args.batch_size, shuffle=True, generator=generator)

    desc = (
        f"checkpoint {args.checkpoint}; first {args.batch_size} {dataset} test images "
        f"(static binarization, seed {EVAL_SEED}); warm-up on dynamically binarized training batches"
    )
    return model, guide, x, stream(), desc


def warm_up(objective, model, guide, batches: Iterator[torch.Tensor], steps: int) -> str:
    """Train the estimator's own state (never the model or guide); return a description."""
    baseline = getattr(getattr(objective, "config", None), "baseline", None)
    if baseline == "avg":
        for _ in range(steps):
            # Each call folds that batch's mean signal into the average, after using it.
            objective.differentiable_loss(model, guide, next(batches))
        return f"{steps} running-average updates"
    if baseline == "nvil":
        objective.baseline(next(batches))  # materializes the network's lazy first layer
        params = list(objective.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-3)
        for _ in range(steps):
            loss = objective.differentiable_loss(model, guide, next(batches))
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            optimizer.step()
        return f"{steps} Adam steps on the baseline network"
    return "none needed"


def measure(args) -> dict:
    pyro.enable_validation(False)
    model, guide, x, batches, desc = load(args)
    model.eval()  # no dropout or batch norm here; eval mode keeps the networks deterministic
    guide.eval()
    rows = []
    for bound, name, make in ESTIMATORS:
        torch.manual_seed(args.seed)
        objective = make()
        t0 = time.perf_counter()
        with Reparam():  # the default switch, written out: only ScoreFunction marks sites non-reparameterized
            how = warm_up(objective, model, guide, batches, args.warmup_steps)
            t1 = time.perf_counter()
            stats = gradient_variance(model, guide, objective, x, n=args.n)
        t2 = time.perf_counter()
        row = {
            "bound": bound,
            "estimator": name,
            "warm_up": how,
            "warm_up_seconds": t1 - t0,
            "seconds": t2 - t1,
        }
        for group in ("guide", "model"):
            s = stats[group]
            summary = s.summary()
            signal2 = s.mean.pow(2).sum().item() - s.total_variance / s.n
            summary["debiased_norm_snr"] = math.sqrt(max(signal2, 0.0) / s.total_variance)
            row[group] = summary
        rows.append(row)
    return {
        "setting": desc,
        "n": args.n,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup_steps,
        "seed": args.seed,
        "noise_floor": {"norm_snr": 1 / math.sqrt(args.n), "coord_snr": math.sqrt(2 / math.pi / args.n)},
        "machine": f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.machine()}",
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        "| bound | estimator | warm-up | encoder norm SNR | debiased | encoder coord SNR | "
        "encoder tr Cov | decoder norm SNR | s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        g, m = r["guide"], r["model"]
        lines.append(
            f"| {r['bound']} | {r['estimator']} | {r['warm_up']} | {g['norm_snr']:.4f} | "
            f"{g['debiased_norm_snr']:.4f} | {g['mean_snr']:.4f} | {g['total_variance']:.3g} | "
            f"{m['norm_snr']:.4f} | {r['seconds']:.0f} |"
        )
    floor = result["noise_floor"]
    lines += [
        "",
        f"{result['setting']}; n={result['n']} gradient draws per estimator, seed {result['seed']}; "
        f"noise floors: norm SNR {floor['norm_snr']:.4f}, coord SNR {floor['coord_snr']:.4f}; "
        f"{result['machine']}",
    ]
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """A bar chart of the encoder's norm SNR per estimator (log scale), with the noise floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    short = {"ScoreFunction": "SF", "no baseline": "none", " baseline": ""}
    labels = []
    for r in rows:
        name = r["estimator"]
        for long, abbreviation in short.items():
            name = name.replace(long, abbreviation)
        labels.append(f"{r['bound']}\n{name}")
    colors = ["C0" if r["bound"] == "ELBO" else "C1" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(range(len(rows)), [r["guide"]["norm_snr"] for r in rows], color=colors)
    ax.axhline(result["noise_floor"]["norm_snr"], color="k", ls="--", lw=1, label="noise floor 1/sqrt(n)")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("encoder gradient SNR")
    ax.set_title(
        f"||E g|| / sqrt(tr Cov g), n={result['n']} draws, batch of {result['batch_size']}", fontsize=9
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a trained VAE checkpoint (vaezoo train)")
    parser.add_argument("--n", type=int, default=500, help="gradient draws per estimator")
    parser.add_argument("--batch-size", type=int, default=100, help="the first B test images form the batch")
    parser.add_argument("--warmup-steps", type=int, default=1000, help="baseline warm-up steps (avg, nvil)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--png", default=None, help="write a bar chart of the encoder SNR to this PNG")
    parser.add_argument("--from-json", default=None, help="only print/plot the results of an earlier run")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run on an untrained tiny VAE")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.batch_size, args.warmup_steps = 5, 8, 3
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        print(markdown(result))
        if args.png:
            plot(result, args.png)
        return
    result = measure(args)
    print(
        f"ran: encoder gradient SNR of {len(ESTIMATORS)} estimators; {result['setting']}; "
        f"n={args.n} draws each, baseline warm-up {args.warmup_steps} steps, seed {args.seed}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {result['machine']}"
    )
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.png:
        plot(result, args.png)


if __name__ == "__main__":
    main()
