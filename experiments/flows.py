"""Flow guides at one CPU budget: the same VAE trained with the mean-field, planar, IAF and Sylvester guides.

Issue 10. One model (:class:`~vaezoo.models.VAE`, z 50, decoder 200-200 tanh, Bernoulli likelihood) and
one encoder network (784-200-200 tanh) for every guide; only what the encoder's head feeds differs
(:data:`GUIDES`). Every guide is trained with the same objective (:class:`~vaezoo.inference.ELBO`, one
sample; the mean-field guide's KL is taken in closed form, which the flows cannot), batch, learning rate,
seed and number of epochs on dynamically binarized MNIST. Each stage is a separate command::

    export OMP_NUM_THREADS=1 VAEZOO_DATA=../shared/data
    python experiments/flows.py train --guides iaf --epochs 100       # checkpoint in runs/flows/iaf (resumes)
    python experiments/flows.py eval --guides iaf --k 5000 --test-size 1000
    python experiments/flows.py report                               # docs/flows/README.md

``train`` records the seconds of every epoch (the training loop only; :func:`~vaezoo.inference.fit`);
``eval`` records the test ELBO over the whole test set (10 samples per image) and the test NLL by
importance sampling with the guide as proposal on the first ``--test-size`` test images, all binarized
once with the project's seed (:data:`vaezoo.cli.EVAL_SEED`), and draws a grid of 64 samples of the
trained model. Results are JSON files under ``docs/flows/results/``; ``report`` also lists the rows that
the pythae peer (``benchmarks/peers/pythae/``) wrote there. ``--out DIR`` (before the sub-command, on
every stage) puts checkpoints under ``DIR/runs`` and results under ``DIR/docs``; ``--smoke`` shrinks
everything to seconds (it needs ``--out``).

References:
    - Rezende & Mohamed (2015), Variational Inference with Normalizing Flows, ICML.
    - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational Inference
      with Inverse Autoregressive Flow, NIPS.
    - van den Berg, Hasenclever, Tomczak & Welling (2018), Sylvester Normalizing Flows for Variational
      Inference, UAI.
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import pyro
import torch
from torchvision.utils import save_image

from vaezoo import ELBO, checkpoint, data, fit, log_likelihood
from vaezoo.analysis import prior_samples
from vaezoo.inference.fit import mean_bound, parameters
from vaezoo.registry import build_guide, build_model

EVAL_SEED = 1234  # the project's fixed binarization of the test set (vaezoo.cli.EVAL_SEED)
ROOT = Path(__file__).resolve().parents[1]
ACTIVATION = "tanh"
MODEL = {"z_dim": 50, "hidden": (200, 200), "activation": ACTIVATION}
ENCODER = {"hidden": (200, 200), "activation": ACTIVATION}
# Flow settings: the guides' defaults, except the Sylvester rank, which at M = D = 50 would make the
# encoder's head emit 30200 numbers per image (6M weights); M = 16 keeps it near the other flows' cost.
GUIDES = {
    "amortized": {},
    "planar": {"steps": 4},
    "iaf": {"steps": 2, "context": 20, "made_hidden": (100, 100)},
    "sylvester": {"steps": 4, "rank": 16},
}
SMOKE = {
    "model": {"z_dim": 4, "hidden": (16,)},
    "encoder": {"hidden": (16,)},
    "iaf": {"made_hidden": (8,)},
    "sylvester": {"rank": 2},
}
LABELS = {
    "amortized": "mean-field Gaussian",
    "planar": "planar, K = 4",
    "iaf": "IAF, T = 2 (MADE 100-100, context 20)",
    "sylvester": "orthogonal Sylvester, K = 4, M = 16",
}
PUBLISHED = [  # (model, budget, test ELBO, test NLL); budgets as far as stated here
    (
        "ResNet VAE with IAF (Kingma et al. 2016, Table 2)",
        "convolutional ResNet VAE, its own schedule",
        "-79.88",
        "79.10",
    ),
    (
        "NVAE (Vahdat & Kautz 2020, Table 2)",
        "deep hierarchical convolutional VAE, its own schedule",
        "",
        "78.01",
    ),
    ("VAE, k = 1, one stochastic layer (Burda et al. 2016, Table 1)", "3280 epochs, lr decay", "", "86.76"),
    (
        "IWAE, k = 50, two stochastic layers (Burda et al. 2016, Table 1)",
        "3280 epochs, lr decay",
        "",
        "82.90",
    ),
]


def configs(guide: str, smoke: bool) -> tuple[dict, dict]:
    model = {**MODEL, **(SMOKE["model"] if smoke else {})}
    cfg = {
        **ENCODER,
        **GUIDES[guide],
        **(SMOKE["encoder"] if smoke else {}),
        **(SMOKE.get(guide, {}) if smoke else {}),
    }
    return model, cfg


def paths(args) -> tuple[Path, Path]:
    base = Path(args.out) if args.out else None
    runs = base / "runs" if base else ROOT / "runs" / "flows"
    docs = base / "docs" if base else ROOT / "docs" / "flows"
    (docs / "results").mkdir(parents=True, exist_ok=True)
    return runs, docs


def cmd_train(args) -> None:
    train = data.load("mnist", "train", "dynamic")
    if args.train_size:
        train.images, train.labels = train.images[: args.train_size], train.labels[: args.train_size]
    for name in args.guides:
        train_one(args, name, train)


def train_one(args, name: str, train) -> None:
    runs, docs = paths(args)
    model_cfg, guide_cfg = configs(name, args.smoke)
    pyro.set_rng_seed(args.seed)
    model = build_model("vae", **model_cfg)
    guide = build_guide(name, model, guide_cfg)
    history = fit(
        model,
        guide,
        train,
        ELBO(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        out=runs / name,
        seed=args.seed,
        progress=False,
        validate=False,
    )
    seconds = [h["seconds"] for h in history]
    result = {
        "guide": name,
        "label": LABELS[name],
        "model": model_cfg,
        "guide_config": guide_cfg,
        "parameters": sum(p.numel() for p in parameters(model, guide)),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "train_images": len(train),
        "seconds_per_epoch": seconds,
        "train_loss": [h["train_loss"] for h in history],
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "command": command(),
    }
    (docs / "results" / f"train-{name}.json").write_text(json.dumps(result, indent=1))
    mean = sum(seconds) / len(seconds)
    last = history[-1]["train_loss"]
    print(f"{name}: {args.epochs} epochs, {mean:.1f} s per epoch, last train loss {last:.2f}", flush=True)


def test_data(test_size: int):
    test = data.load("mnist", "test", "static", seed=EVAL_SEED)
    full = test[torch.arange(len(test))][0]
    return full, full[:test_size]


def evaluate(model, guide, full: torch.Tensor, subset: torch.Tensor, k: int, seed: int) -> dict:
    """Test ELBO over ``full`` and IS log p(x) over ``subset``, as the JSON fields every row shares."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    elbo = mean_bound(model, guide, ELBO(num_particles=10), full)
    t1 = time.perf_counter()
    ll = log_likelihood(model, guide, subset, k=k)
    t2 = time.perf_counter()
    return {
        "test_elbo": elbo,
        "elbo_images": len(full),
        "nll": -ll.mean,
        "nll_mc_stderr": ll.stderr,
        "nll_data_stderr": ll.data_stderr,
        "is_k": k,
        "nll_images": len(subset),
        "elbo_seconds": t1 - t0,
        "is_seconds": t2 - t1,
    }


def cmd_eval(args) -> None:
    full, subset = test_data(args.test_size)
    for name in args.guides:
        eval_one(args, name, full, subset)


def eval_one(args, name: str, full: torch.Tensor, subset: torch.Tensor) -> None:
    runs, docs = paths(args)
    model, guide, _, payload = checkpoint.restore(runs / name / "checkpoint.pt")
    result = {
        "guide": name,
        "epochs_trained": payload["epoch"],
        "command": command(),
        **evaluate(model, guide, full, subset, args.k, args.seed),
    }
    torch.manual_seed(args.seed)
    save_image(prior_samples(model, 64), docs / f"samples-{name}.png", nrow=8, padding=1)
    (docs / "results" / f"eval-{name}.json").write_text(json.dumps(result, indent=1))
    nll = f"NLL {result['nll']:.2f} ± {result['nll_mc_stderr']:.2f} (IS k={args.k}, {len(subset)} images)"
    print(f"{name}: test ELBO {result['test_elbo']:.2f}, {nll}, {result['is_seconds']:.0f} s", flush=True)


def _read(folder: Path, pattern: str) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.glob(pattern)):
        r = json.loads(p.read_text())
        out[r.get("guide") or r["peer"]] = r
    return out


def _row(label: str, train: dict, ev: dict | None) -> str:
    s = train["seconds_per_epoch"]
    budget = f"{train['epochs']} epochs, {sum(s) / len(s):.1f} s/epoch"
    if ev is None:
        return f"| {label} | {train['parameters']:,} | {budget} | not evaluated | |"
    return (
        f"| {label} | {train['parameters']:,} | {budget} | {ev['test_elbo']:.2f} "
        f"| {ev['nll']:.2f} ± {ev['nll_mc_stderr']:.2f} |"
    )


PEERS = (
    "pythae peers (`benchmarks/peers/pythae/`): pythae 0.1.2's `VAE`, `VAE_LinNF` and `VAE_IAF` trained by "
    "pythae's own trainer with the same encoder and decoder layers, data, batch, learning rate, seed and "
    "epochs; their flows are not amortized (one set of flow parameters for all x). The weights are ported "
    "to vaezoo (decoder into `vae`, encoder and flow as the proposal) and scored as above. Port check: "
    "pythae's own ELBO on the first 100 test images with recorded noise, minus vaezoo's `ELBO` on the ported "
    "weights with the same noise, both in float64."
)


def _setup(t: dict, e: dict | None) -> str:
    """The paragraph that states what every row of the table shares."""
    m, g = t["model"], t["guide_config"]
    text = (
        f"Model: `vae`, z {m['z_dim']}, decoder {'-'.join(map(str, m['hidden']))} {m['activation']}, "
        f"Bernoulli likelihood; every guide's encoder {'-'.join(map(str, g['hidden']))} {g['activation']}. "
        "Budget per row: "
        f"{t['epochs']} epochs of {t['train_images']} training images (dynamic binarization), batch "
        f"{t['batch_size']}, Adam lr {t['lr']}, seed {t['seed']}, single-sample ELBO (closed-form KL for the "
        f"mean-field guide only), {t['threads']} torch thread(s) on a shared {os.cpu_count()}-core "
        f"{t['machine']} machine; s/epoch is the training loop alone."
    )
    if e:
        text += (
            f" Test ELBO: all {e['elbo_images']} test images, 10 samples each; test NLL: importance sampling "
            f"with the guide as proposal, k = {e['is_k']}, on the first {e['nll_images']} test images "
            f"(± Monte Carlo s.e.); test images binarized once with seed {EVAL_SEED}."
        )
    return text


def cmd_report(args) -> None:
    _, docs = paths(args)
    results = docs / "results"
    trains, evals, peers = (
        _read(results, "train-*.json"),
        _read(results, "eval-*.json"),
        _read(results, "peer-*.json"),
    )
    order = [g for g in GUIDES if g in trains]
    lines = [
        "# Flow guides on dynamically binarized MNIST",
        "",
        "Written by `python experiments/flows.py report` "
        "from `docs/flows/results/*.json`; the commands that made each file are in its `command` field.",
        "",
    ]
    if order:
        lines += [_setup(trains[order[0]], next((evals[g] for g in order if g in evals), None)), ""]
        lines += [
            "| guide | parameters (model + guide) | budget | test ELBO | test NLL (nats) |",
            "|" + "---|" * 5,
        ]
        lines += [_row(trains[g]["label"], trains[g], evals.get(g)) for g in order]
    if peers:
        lines += [
            "",
            PEERS,
            "",
            "| pythae model | parameters | budget | test ELBO | test NLL (nats) "
            "| port check: pythae ELBO - vaezoo ELBO |",
            "|" + "---|" * 6,
        ]
        for r in peers.values():
            note = "" if r["invertible"] else " (a planar step has w.u < -1: not invertible, NLL not valid)"
            lines.append(_row(r["label"] + note, r, r) + f" {r['port_check']['difference']:.1e} |")
    lines += [
        "",
        "Published (different architectures and budgets; NLL by importance sampling):",
        "",
        "| model | budget | test ELBO | test NLL |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {b} | {e} | {n} |" for m, b, e, n in PUBLISHED]
    figs = [g for g in order if (docs / f"samples-{g}.png").exists()]
    figs += [p for p in peers if (docs / f"samples-{p}.png").exists()]
    if figs:
        lines += [
            "",
            "Samples (pixel probabilities of 64 prior draws), in the order: " + ", ".join(figs) + ":",
            "",
            " ".join(f'<img src="samples-{g}.png" width="160">' for g in figs),
        ]
    (docs / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {docs / 'README.md'} ({len(order)} guides, {len(peers)} peers)")


def command() -> str:
    return shlex.join(["python", *sys.argv])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", default="", help="write runs/ and docs/ under this folder instead of the repository's"
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny networks and budgets, seconds per stage; needs --out"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--guides", nargs="+", choices=list(GUIDES), default=list(GUIDES), help="default: all")
    t.add_argument("--epochs", type=int, default=None, help="default 100 (--smoke: 1)")
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--train-size", type=int, default=0, help="first N training images (0: all 60k)")
    e = sub.add_parser("eval")
    e.add_argument("--guides", nargs="+", choices=list(GUIDES), default=list(GUIDES), help="default: all")
    e.add_argument(
        "--k", type=int, default=None, help="importance samples per image (default 5000; --smoke: 4)"
    )
    e.add_argument(
        "--test-size", type=int, default=None, help="first N test images for IS (default 1000; --smoke: 8)"
    )
    e.add_argument("--seed", type=int, default=0)
    sub.add_parser("report")
    args = p.parse_args(argv)
    if args.smoke and not args.out:
        p.error("--smoke needs --out, so that the repository's runs/ and docs/ stay untouched")
    if args.cmd == "train":
        args.epochs = args.epochs or (1 if args.smoke else 100)
    if args.cmd == "eval":
        args.k = args.k or (4 if args.smoke else 5000)
        args.test_size = args.test_size or (8 if args.smoke else 1000)
    print("command: " + command(), flush=True)
    {"train": cmd_train, "eval": cmd_eval, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
