"""Which layers of a deep hierarchy learn? HVAE, Markov HVAE, Ladder VAE and VLAE at one CPU budget.

The study of issue 4: every hierarchy with 3 and 5 stochastic layers on dynamically binarized MNIST,
plus the HVAE and the Ladder VAE at depth 5 with and without batch norm (BN) and KL warm-up (WU).
For each run it records the test NLL (importance sampling with the guide as proposal), the test
ELBO, per-layer KL and active units (Burda et al. 2016; posterior means with the Monte Carlo noise
of conditional guides subtracted), and the time taken. It writes ``<out>/results.json`` and
``<out>/<run>/`` checkpoints (a rerun resumes and skips finished runs), and into ``--docs`` the
results JSON, a markdown table (between markers in ``results.md``, so text around it is kept) and
per-layer resampling grids for the best Ladder VAE and the VLAEs.

    OMP_NUM_THREADS=1 python experiments/hierarchies.py --epochs 5 --eval-k 200 --test-size 1000   # ~48 min
    OMP_NUM_THREADS=1 python experiments/hierarchies.py --smoke --out /tmp/h_smoke     # seconds

Architectures (one per depth, shared by hvae / markov_hvae / lvae so that only the inference network,
BN and WU differ): latent sizes 64-32-16-8-4 (depth 5) or 64-32-16 (depth 3), two-layer leaky-ReLU
MLPs of 512-256-128-64-32 units per rung (Sønderby et al. 2016's MNIST model). VLAE: 2-d latents per
layer (Zhao et al. 2017's MNIST setting) with MLPs of 256 units; ``vlae-3-conv`` is the paper's
convolutional variant with 256-unit dense layers, run only when named (``--runs vlae-3-conv``).

References:
    - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from torchvision.utils import save_image

from vaezoo import ELBO, data, fit, log_likelihood
from vaezoo.analysis.diagnostics import layer_grid, layer_report
from vaezoo.inference.fit import mean_bound, parameters
from vaezoo.registry import build_model, build_objective

EVAL_SEED = 1234  # the project's fixed binarization of the test set (vaezoo/cli/base.py)
ROOT = Path(__file__).resolve().parents[1]
Z = {3: (64, 32, 16), 5: (64, 32, 16, 8, 4)}
HIDDEN = {3: (512, 256, 128), 5: (512, 256, 128, 64, 32)}
START, END = "<!-- table:start -->", "<!-- table:end -->"


@dataclass(frozen=True)
class Run:
    name: str
    model: str
    depth: int
    batch_norm: bool
    warmup: bool
    conv: bool = False
    objective: str = "elbo"

    def model_config(self, smoke: bool) -> dict:
        if self.model == "nvae":  # the model's CPU-sized defaults; depth = scales x groups per scale
            config = {"scales": 2, "groups_per_scale": self.depth // 2}
            if smoke:
                config.update(channels=2, latent_channels=2, preprocess_blocks=1)
            return config
        if self.model == "vlae":
            config = {"z_dims": (2,) * self.depth, "hidden": (32 if smoke else 256,)}
            if self.conv:
                config.update(architecture="conv", conv_channels=(8, 16) if smoke else (64, 128))
            return config
        hidden = (32,) if smoke else HIDDEN[self.depth]
        return {
            "z_dims": Z[self.depth],
            "hidden": hidden,
            "activation": "leaky_relu",
            "batch_norm": self.batch_norm,
        }

    def architecture(self, smoke: bool) -> str:
        c = self.model_config(smoke)
        if self.model == "nvae":
            m = build_model("nvae", **c).config
            return (
                f"{m.scales} scales x {m.groups_per_scale} groups of {m.latent_channels} latent channels; "
                f"residual cells, {m.channels} channels at {m.canvas}x{m.canvas}; `{self.objective}`"
            )
        z = "-".join(map(str, c["z_dims"]))
        h = "-".join(map(str, c["hidden"] * (self.depth if len(c["hidden"]) == 1 else 1)))
        if self.conv:
            channels = "-".join(map(str, c["conv_channels"]))
            return f"z {z}; conv {channels} + MLP {h}"
        return f"z {z}; MLP {h}"


def _run(model: str, depth: int, bn: bool, wu: bool, conv: bool = False, objective: str = "elbo") -> Run:
    suffix = "".join(s for s, on in (("-bn", bn), ("-wu", wu), ("-conv", conv)) if on)
    return Run(f"{model}-{depth}{suffix}", model, depth, bn, wu, conv, objective)


# Most informative first, so a cut budget still answers claims (a) and (b) at depth 5.
RUNS = [
    _run("lvae", 5, True, True),
    _run("hvae", 5, False, False),
    _run("hvae", 5, True, True),
    _run("lvae", 5, False, False),
    _run("hvae", 5, True, False),
    _run("hvae", 5, False, True),
    _run("lvae", 5, True, False),
    _run("lvae", 5, False, True),
    _run("vlae", 3, False, False),
    _run("vlae", 5, False, False),
    _run("markov_hvae", 5, False, False),
    _run("markov_hvae", 5, True, True),  # the LVAE paper's "VAE+BN+WU" baseline is this Markov pair
    _run("lvae", 3, True, True),
    _run("hvae", 3, False, False),
    _run("markov_hvae", 3, False, False),
]
# Not in "all": the paper's convolutional VLAE (stride-2 convolutions of 64 and 128 channels) with
# 256-unit dense layers instead of 1024 (about 0.12 s per step, 70 s per epoch, on one thread).
# NVAE-style (issue 10): 2 scales x 2 groups, batch norm in its cells, trained by nvae_elbo (warm-up,
# KL balancing during warm-up, spectral regularization); its reported bound is the plain ELBO.
EXTRA = [_run("vlae", 3, False, False, conv=True), _run("nvae", 4, True, True, objective="nvae_elbo")]
BY_NAME = {r.name: r for r in RUNS + EXTRA}


def select(spec: str) -> list[Run]:
    if spec == "all":
        return RUNS
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; choose from: all, {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def train_and_evaluate(run: Run, train, test, args, out: Path) -> dict:
    pyro.set_rng_seed(args.seed)
    model = build_model(run.model, **run.model_config(args.smoke))
    guide = model.default_guide()
    warmup = args.warmup_epochs if run.warmup else 0.0
    t0 = time.perf_counter()
    history = fit(
        model,
        guide,
        train,
        build_objective(run.objective, kl_warmup=warmup),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        out=out / run.name,
        seed=args.seed,
        progress=False,
        validate=False,
    )
    train_seconds = sum(h["seconds"] for h in history)
    t1 = time.perf_counter()
    ll = log_likelihood(model, guide, test, k=args.eval_k)
    elbo = mean_bound(model, guide, ELBO(num_particles=10), test)
    report = layer_report(model, guide, test, num_particles=10)
    eval_seconds = time.perf_counter() - t1
    torch.save({"model": model.state_dict(), "guide": guide.state_dict()}, out / run.name / "final.pt")
    return {
        "run": run.name,
        "model": run.model,
        "depth": run.depth,
        "batch_norm": run.batch_norm,
        "warmup_epochs": warmup,
        "guide": type(guide).__name__,
        "architecture": run.architecture(args.smoke),
        "parameters": sum(p.numel() for p in parameters(model, guide)),
        "nll": -ll.mean,
        "nll_mc_stderr": ll.stderr,
        "nll_data_stderr": ll.data_stderr,
        "elbo": elbo,
        "final_train_loss": history[-1]["train_loss"],
        "layer_kl": report.kl,
        "active_units": report.active,
        "units": report.units,
        "pca_top3": {n: v[:3].tolist() for n, v in report.explained_variance.items()},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - t0,
    }


def load_pair(run: Run, args, out: Path):
    model = build_model(run.model, **run.model_config(args.smoke))
    guide = model.default_guide()
    state = torch.load(out / run.name / "final.pt", weights_only=True)
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    return model, guide


def write_grids(results: dict, args, out: Path, docs: Path, test) -> list[str]:
    """Per-layer resampling grids: 8 test images (rows) x 8 draws of one layer (columns)."""
    lvaes = [r for r in results.values() if r["model"] == "lvae"]
    chosen = [min(lvaes, key=lambda r: r["nll"])] if lvaes else []
    chosen += [r for r in results.values() if r["model"] == "vlae"]
    x = test[:8]
    written = []
    for r in chosen:
        model, guide = load_pair(BY_NAME[r["run"]], args, out)
        # A Markov model's x sees z_l (l > 1) only through the layers below, so those follow the prior
        # mean there; the VLAE injects every layer into the generator, so the others stay fixed.
        below = "fixed" if r["model"] == "vlae" else "prior_mean"
        for layer in range(1, r["depth"] + 1):
            torch.manual_seed(args.seed)
            grid = layer_grid(model, guide, x, layer, 8, below=below)
            path = docs / f"{r['run']}_layer{layer}.png"
            save_image(grid, path, nrow=8, padding=1)
            written.append(path.name)
    return written


def table(results: dict, args, grids: list[str]) -> str:
    n_test = next(iter(results.values()))["test_images"] if results else 0
    budget = (
        f"Budget: {args.epochs} epochs on {'the full 60k' if not args.train_size else args.train_size} "
        f"dynamically binarized MNIST training images, batch {args.batch_size}, Adam lr {args.lr}, "
        f"1 CPU thread (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"torch threads {torch.get_num_threads()}), seed {args.seed}; warm-up (WU) = KL weight 0 -> 1 "
        f"over the first {args.warmup_epochs:g} epochs. Evaluation on the first {n_test} "
        f"test images binarized with seed {EVAL_SEED}: NLL by importance sampling with k = {args.eval_k} "
        f"(guide as proposal; ± Monte Carlo s.e.), ELBO with 10 samples, per-layer KL and active units "
        f"(Cov_x E_q[u] > 0.01, particle noise removed; 10 particles). Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs."
    )
    head = (
        "| run | architecture | BN | WU | NLL (nats) | -ELBO (nats) | KL per layer z1..zL (nats) "
        "| active units z1..zL | train s | eval s |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in sorted(results.values(), key=lambda r: list(BY_NAME).index(r["run"])):
        kl = " / ".join(f"{v:.1f}" for v in r["layer_kl"].values())
        au = " / ".join(f"{r['active_units'][n]}/{r['units'][n]}" for n in r["units"])
        rows.append(
            f"| {r['run']} | {r['architecture']} | {'yes' if r['batch_norm'] else 'no'} "
            f"| {'yes' if r['warmup_epochs'] else 'no'} | {r['nll']:.2f} ± {r['nll_mc_stderr']:.2f} "
            f"| {-r['elbo']:.2f} | {kl} | {au} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |"
        )
    figs = "\n".join(f"![{g}]({g})" for g in grids)
    note = "ELBO is reported as -ELBO (nats, an upper bound on the NLL)."
    return f"{START}\n{budget}\n\n{head}\n" + "\n".join(rows) + f"\n\n{note}\n\n{figs}\n{END}"


def write_docs(results: dict, args, grids: list[str], docs: Path) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.json").write_text(json.dumps(results, indent=1))
    md = docs / "results.md"
    block = table(results, args, grids)
    if md.exists() and START in md.read_text():
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, md.read_text(), flags=re.S)
    else:
        text = f"# Hierarchies: which layers learn?\n\n{block}\n"
    md.write_text(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="seconds-long run with tiny data and networks")
    p.add_argument("--out", default=str(ROOT / "runs" / "hierarchies"), help="checkpoints and results.json")
    p.add_argument(
        "--docs", default=None, help="results.md, PNGs (default docs/hierarchies; smoke: OUT/docs)"
    )
    p.add_argument("--runs", default="all", help=f"comma-separated, from: {', '.join(BY_NAME)}")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--warmup-epochs", type=float, default=None, help="KL warm-up epochs (default epochs/2)")
    p.add_argument("--train-size", type=int, default=0, help="first N training images (0: all 60k)")
    p.add_argument("--test-size", type=int, default=1000, help="first N test images")
    p.add_argument("--eval-k", type=int, default=200, help="importance samples per test image")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.environ.get("VAEZOO_DATA", "/work/shared/data"))
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs, args.train_size, args.test_size, args.eval_k = 1, 200, 40, 4
    if args.warmup_epochs is None:
        args.warmup_epochs = args.epochs / 2
    out = Path(args.out)
    docs = Path(args.docs) if args.docs else (out / "docs" if args.smoke else ROOT / "docs" / "hierarchies")
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    train = data.load("mnist", "train", "dynamic", data_dir=args.data_dir)
    if args.train_size:
        train.images, train.labels = train.images[: args.train_size], train.labels[: args.train_size]
    test = data.load("mnist", "test", "static", data_dir=args.data_dir, seed=EVAL_SEED)
    test = test[torch.arange(min(args.test_size, len(test)))][0]
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"ran: {platform.platform()}, torch threads {torch.get_num_threads()}, {vars(args)}", flush=True)
    for run in select(args.runs):
        if run.name in results:
            print(f"{run.name}: done before, skipped", flush=True)
            continue
        r = train_and_evaluate(run, train, test, args, out)
        r["test_images"] = len(test)
        r["budget"] = {
            k: getattr(args, k)
            for k in ("epochs", "warmup_epochs", "train_size", "eval_k", "batch_size", "lr", "seed")
        }
        results[run.name] = r
        results_path.write_text(json.dumps(results, indent=1))
        print(
            f"{run.name}: NLL {r['nll']:.2f} ± {r['nll_mc_stderr']:.2f}, -ELBO {-r['elbo']:.2f}, "
            f"KL {[round(v, 2) for v in r['layer_kl'].values()]}, active {list(r['active_units'].values())}, "
            f"train {r['train_seconds']:.0f} s, eval {r['eval_seconds']:.0f} s",
            flush=True,
        )
    grids = write_grids(results, args, out, docs, test) if results else []
    write_docs(results, args, grids, docs)
    total = math.fsum(r["wall_seconds"] for r in results.values())
    print(f"wrote {docs / 'results.md'} and {len(grids)} grids; runs took {total:.0f} s in all")


if __name__ == "__main__":
    main()
