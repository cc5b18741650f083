"""The VRNN (Chung et al. 2015) at a small CPU budget: ELBO vs IWAE training, test NLL by importance sampling.

Data (:mod:`vaezoo.sequences`, :mod:`vaezoo.chorales`):

- ``mnist-rows``: statically binarized MNIST (seed 1234 for test, as the README's image numbers) read
  as 28 steps of 28 pixels; NLL in nats per image, beside the image models.
- ``chorales``: Bach chorales from the music21 corpus as 88-key quarter-note piano rolls (needs
  ``pip install 'vaezoo[music]'``; our own seeded split, not the published JSB one); NLL in nats per
  time step (total over the test set / total steps), the convention of the JSB literature.
- ``synthetic``: a tiny noisy shift register (``--smoke`` uses it).

For each objective it trains a fresh model from the same seed, then reports on the test set the
importance-sampled log p(x) with the VRNN guide as proposal (k stated) and the ELBO::

    OMP_NUM_THREADS=1 python experiments/vrnn.py --data chorales --epochs 20
    OMP_NUM_THREADS=1 python experiments/vrnn.py --data mnist-rows --train-size 10000 --epochs 2
    OMP_NUM_THREADS=1 python experiments/vrnn.py --smoke

References:
    - Chung, Kastner, Dinh, Goel, Courville & Bengio (2015), A Recurrent Latent Variable Model for
      Sequential Data, NIPS.
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time

import pyro
import torch

from vaezoo import sequences
from vaezoo.inference import ELBO, IWAE, fit, log_likelihood
from vaezoo.inference.fit import mean_bound
from vaezoo.models import VRNN

EVAL_SEED = 1234


def load(name: str, train_size: int, test_size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train, test, unit) with at most ``train_size`` / ``test_size`` sequences (0: all)."""
    if name == "mnist-rows":
        train = sequences.mnist_rows("train", binarize="static", seed=0)
        test = sequences.mnist_rows("test", binarize="static", seed=EVAL_SEED)
        unit = "image"
    elif name == "chorales":
        from vaezoo.chorales import chorales

        train, test, unit = chorales("train", progress=True), chorales("test"), "step"
    else:
        train, test = sequences.synthetic(256, 12, 8, seed=0), sequences.synthetic(64, 12, 8, seed=1)
        unit = "step"
    g = torch.Generator().manual_seed(0)
    if train_size:
        train = train[torch.randperm(len(train), generator=g)[:train_size]]
    if test_size:
        test = test[:test_size]
    return train, test, unit


def run(args, objective_name: str, train: torch.Tensor, test: torch.Tensor, unit: str) -> dict:
    torch.manual_seed(args.seed)
    model = VRNN(
        x_shape=tuple(train.shape[1:]),
        z_dim=args.z_dim,
        h_dim=args.h_dim,
        feature=args.feature,
        hidden=(args.hidden,),
    )
    guide = model.default_guide()
    objective = ELBO() if objective_name == "elbo" else IWAE(k=args.iwae_k)
    t0 = time.perf_counter()
    fit(
        model,
        guide,
        train,
        objective,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    torch.manual_seed(args.seed + 1)
    ll = log_likelihood(model, guide, test, k=args.eval_k, batch_size=args.eval_batch)
    elbo = mean_bound(model, guide, ELBO(), test)
    steps = int(sequences.lengths(test).sum())
    per = steps / len(test) if unit == "step" else 1.0
    return {
        "objective": objective_name if objective_name == "elbo" else f"iwae-{args.iwae_k}",
        "train_seconds": round(seconds, 1),
        "test_nll_per_" + unit: -ll.mean / per,
        "is_mc_stderr": ll.stderr / per,
        "test_set_stderr": ll.data_stderr / per,
        "test_elbo_per_" + unit: elbo / per,
        "is_k": args.eval_k,
        "n_test": len(test),
        "test_steps": steps,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["mnist-rows", "chorales", "synthetic"], default="synthetic")
    p.add_argument("--objectives", nargs="+", choices=["elbo", "iwae"], default=["elbo", "iwae"])
    p.add_argument("--iwae-k", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--train-size", type=int, default=0, help="0: the whole training split")
    p.add_argument("--test-size", type=int, default=0, help="0: the whole test split")
    p.add_argument("--eval-k", type=int, default=500, help="importance samples per test sequence")
    p.add_argument("--eval-batch", type=int, default=50)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--h-dim", type=int, default=128)
    p.add_argument("--feature", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--smoke", action="store_true", help="seconds: synthetic data, tiny budget")
    args = p.parse_args(argv)
    if args.smoke:
        args.data, args.epochs, args.eval_k, args.h_dim, args.hidden = "synthetic", 1, 10, 16, 16
    print("command: " + shlex.join(["python", *sys.argv]))
    print(
        f"ran: VRNN z={args.z_dim} h={args.h_dim} (GRU) features={args.feature} hidden={args.hidden}, "
        f"data {args.data}, {args.epochs} epochs batch {args.batch_size} Adam lr {args.lr}, "
        f"seed {args.seed}, "
        f"IS k={args.eval_k}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"pyro {pyro.__version__}, {platform.machine()}"
    )
    train, test, unit = load(args.data, args.train_size, args.test_size)
    print(f"data: train {tuple(train.shape)}, test {tuple(test.shape)}, NLL in nats per {unit}")
    results = []
    for name in args.objectives:
        r = run(args, name, train, test, unit)
        results.append(r)
        print(
            f"  {r['objective']:8s} train {r['train_seconds']:7.1f} s  test NLL/{unit} "
            f"{r['test_nll_per_' + unit]:.4f} ± {r['is_mc_stderr']:.4f} (IS s.e.) "
            f"± {r['test_set_stderr']:.4f} (test-set s.e.)  -ELBO/{unit} {-r['test_elbo_per_' + unit]:.4f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
