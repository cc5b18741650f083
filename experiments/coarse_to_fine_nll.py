"""Test NLL of the coarse-to-fine image models beside a plain VAE and a Ladder VAE, at one CPU budget.

Issue 11's first question: at the same budget (training images, epochs, batch, learning rate, seed)
on dynamically binarized MNIST, what test log-likelihood do the PixelVAE (one and two latent levels)
and the Sequential VAE reach, next to the ``vae`` and the 5-layer ``lvae`` of the README? The
Sequential VAE is trained twice: by ``stepwise``, the paper's objective (every step's likelihood of
x, not a bound), and by ``elbo``, the ELBO of the program it writes (x observed once, at the last
step). Whatever the training loss, every run is evaluated on the same program: the test NLL by
importance sampling with the default guide as proposal (:func:`vaezoo.log_likelihood`, a stochastic
upper bound on -log p(x)) and the test ELBO, on the first ``--n-eval`` test images binarized once
with seed 1234. ``train`` also records the wall time of every epoch; ``eval`` draws a grid of 64
prior samples (pixel probabilities) per run.

    OMP_NUM_THREADS=1 python experiments/coarse_to_fine_nll.py train --n-train 10000 --epochs 6  # 40 min
    OMP_NUM_THREADS=1 python experiments/coarse_to_fine_nll.py eval --n-eval 200 --k 50 --elbo-k 10
    python experiments/coarse_to_fine_nll.py report

``train`` writes checkpoints under ``--runs-dir`` (default ``runs/coarse_to_fine_nll``, not in git), ``eval``
one JSON per
run under ``--out`` (default ``docs/coarse_to_fine``, ``results/<run>.json``) and the grids under
``<out>/samples/``; ``report`` writes ``<out>/nll.md``. Finished runs are skipped.

References:
    - Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville (2017), PixelVAE: A Latent Variable
      Model for Natural Images, ICLR.
    - Zhao, Song & Ermon (2017a), Towards Deeper Understanding of Variational Autoencoding Models,
      arXiv:1702.08658.
    - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.utils import save_image

from vaezoo import build_model, build_objective, fit, log_likelihood
from vaezoo.analysis import prior_samples
from vaezoo.checkpoint import restore
from vaezoo.data import ImageData, load

RUNS = Path(__file__).resolve().parents[1] / "runs" / "coarse_to_fine_nll"  # checkpoints, git-ignored

EVAL_SEED = 1234
MARKER = "<!-- table -->"


@dataclass(frozen=True)
class Run:
    """One trained model: its name, config, training objective and (for the table) a description."""

    name: str
    model: str
    config: dict
    objective: str
    what: str
    objective_config: dict = field(default_factory=dict)
    warmup: bool = False  # KL warm-up over half the epochs (the README's LVAE)


RUNS = [
    Run("vae", "vae", {"z_dim": 50, "hidden": (200, 200)}, "elbo", "VAE, z 50, MLP 200-200"),
    Run(
        "lvae",
        "lvae",
        {
            "z_dims": (64, 32, 16, 8, 4),
            "hidden": (512, 256, 128, 64, 32),
            "activation": "leaky_relu",
            "batch_norm": True,
        },
        "elbo",
        "Ladder VAE, 5 layers 64-32-16-8-4, BN + WU",
        warmup=True,
    ),
    Run("pixel_vae-1", "pixel_vae", {"levels": 1}, "elbo", "PixelVAE, 1 level (z 32), 3 PixelCNN layers"),
    Run("pixel_vae-2", "pixel_vae", {"levels": 2}, "elbo", "PixelVAE, 2 levels (z2 32, z1 4x7x7), 3 layers"),
    Run("sequential_vae-stepwise", "sequential_vae", {}, "stepwise", "Sequential VAE, 3 steps of z 20"),
    Run("sequential_vae-elbo", "sequential_vae", {}, "elbo", "Sequential VAE, 3 steps of z 20"),
]
BY_NAME = {r.name: r for r in RUNS}
# Networks of a few units for the test suite.
SMOKE = {
    "vae": {"z_dim": 2, "hidden": (8,)},
    "lvae": {"z_dims": (4, 2), "hidden": (8, 8), "activation": "leaky_relu", "batch_norm": True},
    "pixel_vae": {
        "z_dim": 2,
        "upsample_channels": (2, 2),
        "condition_channels": 2,
        "layers": 1,
        "channels": 2,
        "latent_channels": 1,
        "prior_hidden": 4,
    },
    "sequential_vae": {"steps": 2, "z_dim": 2, "hidden": (8,)},
}


def build(run: Run, smoke: bool):
    config = {**run.config, **SMOKE[run.model]} if smoke else run.config
    torch.manual_seed(0)
    model = build_model(run.model, **config)
    return model, model.default_guide()


def selected(args) -> list[Run]:
    unknown = set(args.runs or ()) - set(BY_NAME)
    if unknown:
        raise SystemExit(f"unknown runs {sorted(unknown)}; choose from {list(BY_NAME)}")
    return [r for r in RUNS if not args.runs or r.name in args.runs]


def train(args) -> None:
    images = load("mnist", "train", "dynamic")
    if args.n_train:
        images = ImageData(images.images[: args.n_train], images.labels[: args.n_train], images.binarize)
    for run in selected(args):
        out = Path(args.runs_dir) / run.name
        if (out / "train.json").exists():
            print(f"{run.name}: trained, skipped", flush=True)
            continue
        model, guide = build(run, args.smoke)
        objective = build_objective(
            run.objective, **run.objective_config, **({"kl_warmup": args.epochs / 2} if run.warmup else {})
        )
        history = fit(
            model,
            guide,
            images,
            objective,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            out=out,
            progress=False,
        )
        record = {
            "run": run.name,
            "objective": objective.describe(),
            "epochs": args.epochs,
            "n_train": len(images),
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "epoch_seconds": [h["seconds"] for h in history],
            "final_train_loss": history[-1]["train_loss"],
            "parameters": sum(p.numel() for m in (model, guide) for p in m.parameters()),
        }
        (out / "train.json").write_text(json.dumps(record, indent=1))
        print(json.dumps(record), flush=True)


def mean_se(t: torch.Tensor) -> list[float]:
    """[mean, standard error over the images]."""
    return [t.mean().item(), (t.std() / len(t) ** 0.5).item()]


def evaluate(model, guide, x: torch.Tensor, k: int, elbo_k: int, batch_size: int) -> dict:
    """-ELBO (``elbo_k`` draws) and IS NLL (``k`` draws) per image on ``x``, as [mean, s.e.]."""
    elbo = build_objective("elbo", num_particles=elbo_k)
    with torch.no_grad():
        bound = torch.cat([elbo.bound(model, guide, xb) for xb in x.split(batch_size)])
    # The PixelVAE's activations are ~30 times the size of x per particle: small chunks of particles.
    ll = log_likelihood(model, guide, x, k=k, batch_size=batch_size, max_elements=2**19)
    return {
        "-elbo": mean_se(-bound),
        "nll": mean_se(-ll.per_datapoint),
        "nll_mc_se": ll.mc_stderr.pow(2).mean().sqrt().item() / len(x) ** 0.5,
    }


def evaluate_all(args) -> None:
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    x = load("mnist", "test", "static", seed=EVAL_SEED).fixed[: args.n_eval]
    for run in selected(args):
        path = out / "results" / f"{run.name}.json"
        trained = Path(args.runs_dir) / run.name / "train.json"
        if path.exists() or not trained.exists():
            print(f"{run.name}: {'evaluated' if path.exists() else 'not trained'}, skipped", flush=True)
            continue
        model, guide, _, _ = restore(Path(args.runs_dir) / run.name / "checkpoint.pt")
        torch.manual_seed(args.seed + 1)
        t0 = time.perf_counter()
        metrics = evaluate(model, guide, x, args.k, args.elbo_k, args.batch_size)
        eval_seconds = time.perf_counter() - t0
        torch.manual_seed(args.seed + 2)
        save_image(prior_samples(model, 64), out / "samples" / f"{run.name}.png", nrow=8, padding=1)
        result = {
            **json.loads(trained.read_text()),
            "what": run.what,
            "n_eval": len(x),
            "k": args.k,
            "elbo_k": args.elbo_k,
            "eval_seconds": eval_seconds,
            **metrics,
        }
        path.write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)


def table(rows: list[dict]) -> str:
    lines = [
        "| run | trained by | test NLL (IS) | test -ELBO | s / epoch | parameters | samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_epoch = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
        lines.append(
            f"| `{r['run']}`: {r['what']} | `{r['objective'].split('(')[0]}` | {r['nll'][0]:.2f} ± "
            f"{r['nll'][1]:.2f} | {r['-elbo'][0]:.2f} ± {r['-elbo'][1]:.2f} | {per_epoch:.0f} | "
            f"{r['parameters']:,} | [png](samples/{r['run']}.png) |"
        )
    r0 = rows[0]
    lines.append(
        f"\nBudget (every run): {r0['epochs']} epochs on the first {r0['n_train']} dynamically binarized "
        f"MNIST training images, batch {r0['batch_size']}, Adam lr {r0['lr']:g}, seed {r0['seed']}, one CPU "
        f"thread. Evaluation on the first {r0['n_eval']} test images (binarized once with seed {EVAL_SEED}): "
        f"NLL by importance sampling with k = {r0['k']} (the guide as proposal), -ELBO with "
        f"{r0['elbo_k']} draws; ± one standard error over the images (the Monte Carlo s.e. of the mean "
        f"NLL is at most {max(r['nll_mc_se'] for r in rows):.2f}). Seconds per epoch on a machine "
        "shared with other jobs: indicative only."
    )
    return "\n".join(lines)


def report(args) -> None:
    out = Path(args.out)
    rows = [json.loads(p.read_text()) for r in RUNS if (p := out / "results" / f"{r.name}.json").exists()]
    if not rows:
        raise SystemExit(f"no results under {out / 'results'}; run train and eval first")
    page = out / "nll.md"
    text = (
        page.read_text()
        if page.exists()
        else f"# Test NLL of the coarse-to-fine models\n\n{MARKER}\n{MARKER}\n"
    )
    if text.count(MARKER) != 2:
        raise SystemExit(f"{page} must hold the table between two lines {MARKER!r}")
    head, _, tail = text.split(MARKER)
    page.write_text(f"{head}{MARKER}\n{table(rows)}\n{MARKER}{tail}")
    print(table(rows))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("train", "train every run"),
        ("eval", "NLL, ELBO and samples of every run"),
        ("report", "the table in <out>/nll.md"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--out", default="docs/coarse_to_fine")
        s.add_argument("--runs-dir", default=str(RUNS))
        s.add_argument("--runs", nargs="*", default=None, help=f"a subset of {list(BY_NAME)}")
        s.add_argument("--smoke", action="store_true", help="networks of a few units (tests)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--batch-size", type=int, default=100)
        if name == "train":
            s.add_argument("--epochs", type=int, default=6)
            s.add_argument("--n-train", type=int, default=10000, help="first N training images (0: all)")
            s.add_argument("--lr", type=float, default=1e-3)
        if name == "eval":
            s.add_argument("--n-eval", type=int, default=200)
            s.add_argument("--k", type=int, default=50)
            s.add_argument("--elbo-k", type=int, default=10)
    args = p.parse_args(argv)
    {"train": train, "eval": evaluate_all, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
