"""Peer run: Pyro's Deep Markov Model example (Krishnan et al. 2017) on vaezoo's Bach chorale arrays.

Runs in its own environment (see README.md here), never imports vaezoo, and never copies the
example: it imports ``dmm.py`` from a checkout of Pyro's ``examples/`` folder given by
``--pyro-examples``, hands it our chorale split in place of its JSB download (by replacing the
data loader's ``load_data``), lets the example's own ``main`` train, and then scores the trained
model on the test split with the same metric as ``experiments/vrnn.py``: importance-sampled
log p(x) per sequence with the model's own guide as proposal, k draws per sequence, reported as
NLL in nats per time step (total over the test set / total steps).

    python run_dmm.py --pyro-examples /tmp/pyro_examples --data chorales.pt --epochs 8 --eval-k 500

References:
    - Krishnan, Shalit & Sontag (2017), Structured Inference Networks for Nonlinear State Space
      Models, AAAI.
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import shlex
import sys
import textwrap
import time

import pyro
import torch
from pyro import poutine


def as_dmm_data(path: str) -> dict:
    """The exported splits in the example's format: zero-padded sequences and their lengths."""
    saved = torch.load(path)
    out = {}
    for split, x in saved["splits"].items():
        mask = ~torch.isnan(x).all(-1)
        out[split] = {"sequences": torch.nan_to_num(x, nan=0.0), "sequence_lengths": mask.sum(-1)}
    return out


@torch.no_grad()
def importance_log_likelihood(dmm_module, model, seq: torch.Tensor, length: int, k: int, chunk: int) -> tuple:
    """log p̂(x) of one sequence from k guide draws, and its delta-method standard error."""
    poly = dmm_module.poly
    log_w = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        rows = seq[None, :length].expand(m, length, seq.shape[-1]).contiguous()
        args = poly.get_mini_batch(torch.arange(m), rows, torch.full((m,), length))
        guide = poutine.trace(model.guide).get_trace(*args)
        joint = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(*args)
        lw = 0.0
        for tr, sign in ((joint, 1.0), (guide, -1.0)):
            tr.compute_log_prob()
            for site in tr.nodes.values():
                if site["type"] == "sample" and "log_prob" in site:
                    lw = lw + sign * site["log_prob"]
        log_w.append(lw.double())
    log_w = torch.cat(log_w)
    est = log_w.logsumexp(0) - math.log(k)
    rel_var = ((2 * log_w).logsumexp(0) - math.log(k) - 2 * est).exp() - 1
    return est.item(), math.sqrt(max(rel_var.item(), 0.0) / k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pyro-examples", required=True, help="folder holding Pyro's examples/dmm.py")
    p.add_argument("--data", required=True, help="chorales exported by export_chorales.py")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--eval-k", type=int, default=500)
    p.add_argument("--chunk", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", default="dmm.log")
    p.add_argument("example_args", nargs="*", help="after --: more flags for the example (e.g. -lr 0.003)")
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    sys.path.insert(0, args.pyro_examples)
    dmm = importlib.import_module("dmm")
    data = as_dmm_data(args.data)
    dmm.poly.load_data = lambda dataset: data
    built = []

    class Recorded(dmm.DMM):  # keeps the instance the example's main() builds, to score it afterwards
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            built.append(self)

    dmm.DMM = Recorded
    # The example's own defaults, as its argparse defines them, with our epoch budget and any flags
    # given after --.
    example_argv = ["-n", str(args.epochs), "-l", args.log, *args.example_args]
    sys.argv = ["dmm.py", *example_argv]
    # The example's command line is parsed by the example's own parser (its __main__ block, run with
    # main() replaced by a catcher), so its defaults are used as they are, not restated here.
    block = textwrap.dedent(open(dmm.__file__).read().split('if __name__ == "__main__":')[1])
    block = block.replace("assert pyro.__version__", "pyro.__version__")
    caught: list = []
    exec(block, {"argparse": argparse, "pyro": pyro, "main": caught.append})  # noqa: S102
    example_args = caught[0]
    print(
        f"ran: Pyro DMM example (pyro {pyro.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}), its defaults except "
        f"{' '.join(example_argv)}; IS k={args.eval_k}"
    )
    pyro.set_rng_seed(args.seed)
    t0 = time.perf_counter()
    dmm.main(example_args)
    seconds = time.perf_counter() - t0
    model = built[-1]
    model.eval()
    test = data["test"]
    total, var, steps = 0.0, 0.0, 0
    for seq, length in zip(test["sequences"], test["sequence_lengths"].tolist(), strict=True):
        est, se = importance_log_likelihood(dmm, model, seq, length, args.eval_k, args.chunk)
        total, var, steps = total + est, var + se**2, steps + length
    print(
        f"DMM  train {seconds:7.1f} s  test NLL/step {-total / steps:.4f} ± {math.sqrt(var) / steps:.4f} "
        f"(IS s.e.)  n={len(test['sequences'])} sequences, {steps} steps"
    )


if __name__ == "__main__":
    main()
