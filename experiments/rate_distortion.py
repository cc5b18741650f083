"""Rate and distortion of one VAE trained by different objectives (Alemi et al. 2018's plane).

Every point trains the same ``vae`` model and mean-field guide (same networks, data, seed, epochs,
batch and learning rate); only the objective changes: the ELBO with a sweep of beta (beta-VAE,
Higgins et al. 2017), and InfoVAE / MMD-VAE (Zhao et al. 2017) with a sweep of lambda. On the first
``--n-eval`` test images (binarized once with seed 1234) each point reports

- rate R = E_x KL(q(z|x) || p(z)) in nats (closed form for the Gaussian pair),
- distortion D = E_x E_q[-log p(x|z)] = -ELBO - R, the ELBO averaged over ``--elbo-k`` draws,
- the test NLL by importance sampling with ``--k`` draws (the guide as proposal), a stochastic upper
  bound on -log p(x), and the ELBO itself (-ELBO = D + R >= NLL).

    OMP_NUM_THREADS=1 python experiments/rate_distortion.py train --epochs 5 --out docs/rate_distortion
    python experiments/rate_distortion.py report --out docs/rate_distortion

References:
    - Alemi, Poole, Fischer, Dillon, Saurous & Murphy (2018), Fixing a Broken ELBO, ICML.
    - Higgins et al. (2017), beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
      Framework, ICLR.
    - Zhao, Song & Ermon (2017), InfoVAE: Information Maximizing Variational Autoencoders, arXiv:1706.02262.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vaezoo import build_model, build_objective, fit, log_likelihood
from vaezoo.analysis import layer_kl
from vaezoo.data import ImageData, load

EVAL_SEED = 1234

#: (label, objective name, config overrides): the points of the sweep.
POINTS: list[tuple[str, str, dict]] = [
    *[(f"elbo-beta{b:g}", "elbo", {"beta": b}) for b in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)],
    *[
        (f"info_vae-lam{lam:g}", "info_vae", {"alpha": 1.0, "lam": lam})
        for lam in (10.0, 100.0, 1000.0, 10000.0)
    ],
]


def evaluate(model, guide, x: torch.Tensor, k: int, elbo_k: int) -> dict[str, list[float]]:
    """Rate, distortion, ELBO and IS NLL on ``x`` as [mean, standard error over the images]."""
    rate = sum(layer_kl(model, guide, x).values())
    elbo = build_objective("elbo", num_particles=elbo_k)
    with torch.no_grad():
        bound = torch.cat([elbo.bound(model, guide, xb) for xb in x.split(250)])
    nll = -log_likelihood(model, guide, x, k=k).per_datapoint

    def summary(t: torch.Tensor) -> list[float]:
        return [t.mean().item(), (t.std() / len(t) ** 0.5).item()]

    return {
        "rate": summary(rate),
        "distortion": summary(-bound - rate),
        "-elbo": summary(-bound),
        "nll": summary(nll),
    }


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load("mnist", "train", "dynamic")
    if args.n_train:
        images = ImageData(images.images[: args.n_train], images.labels[: args.n_train], images.binarize)
    x_test = load("mnist", "test", "static", seed=EVAL_SEED).fixed[: args.n_eval]
    for label, name, overrides in POINTS:
        if args.only and label not in args.only:
            continue
        path = out / f"{label}.json"
        if path.exists():
            print(f"{label}: {path} exists, skipped", flush=True)
            continue
        torch.manual_seed(args.seed)
        model = build_model("vae", z_dim=args.z_dim, hidden=(200, 200), activation="elu")
        guide = model.default_guide()
        objective = build_objective(name, **overrides)
        t0 = time.perf_counter()
        history = fit(
            model,
            guide,
            images,
            objective,
            epochs=args.epochs,
            batch_size=100,
            seed=args.seed,
            progress=False,
        )
        seconds = time.perf_counter() - t0
        torch.manual_seed(args.seed + 1)
        result = {
            "label": label,
            "objective": objective.describe(),
            "epochs": args.epochs,
            "n_train": len(images),
            "train seconds": seconds,
            "final train loss": history[-1]["train_loss"],
            "n_eval": len(x_test),
            "k": args.k,
            "elbo_k": args.elbo_k,
            **evaluate(model, guide, x_test, args.k, args.elbo_k),
        }
        path.write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    rows = [
        json.loads((out / f"{label}.json").read_text())
        for label, _, _ in POINTS
        if (out / f"{label}.json").exists()
    ]
    if not rows:
        raise SystemExit(f"no results under {out}; run the train subcommand first")
    lines = [
        "| objective | rate R (nats) | distortion D (nats) | -ELBO = D + R | NLL (IS) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[q][0]:.2f} ± {r[q][1]:.2f}" for q in ("rate", "distortion", "-elbo", "nll")]
        lines.append(f"| `{r['objective']}` | " + " | ".join(cells) + " |")
    r0 = rows[0]
    lines.append(
        f"\n{r0['epochs']} epochs on {r0['n_train']} training images; evaluated on the first {r0['n_eval']} "
        f"test images (binarized with seed {EVAL_SEED}); ELBO with {r0['elbo_k']} draws, NLL by IS with "
        f"k = {r0['k']}; ± one standard error over the images. Training seconds are in the JSON files "
        "(indicative only: the machine was shared)."
    )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=90)
    for family, marker in (("elbo", "o"), ("info_vae", "s")):
        sel = [r for r in rows if r["label"].startswith(family + "-")]
        if not sel:
            continue
        rate = [r["rate"][0] for r in sel]
        dist = [r["distortion"][0] for r in sel]
        ax.plot(rate, dist, marker=marker, label=family)
        for r, x_, y_ in zip(sel, rate, dist, strict=True):
            tag = r["label"].split("-", 1)[1]
            ax.annotate(
                f"{tag}: NLL {r['nll'][0]:.0f}",
                (x_, y_),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    lo = min(r["nll"][0] for r in rows)
    grid = torch.linspace(0, lo, 50)  # the line D + R = best NLL, down to D = 0
    ax.plot(grid, lo - grid, "k--", lw=0.8, label=f"D + R = {lo:.1f} (the best NLL of the sweep)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)) (nats)")
    ax.set_ylabel("distortion D = -E_q log p(x|z) (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rate_distortion.png")
    print(f"wrote {out / 'table.md'} and {out / 'rate_distortion.png'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate every point of the sweep (skips existing JSON)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--n-train", type=int, default=0, help="first N training images (0: all)")
    t.add_argument("--n-eval", type=int, default=1000)
    t.add_argument("--k", type=int, default=1000)
    t.add_argument("--elbo-k", type=int, default=10)
    t.add_argument("--z-dim", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--only", nargs="*", default=None, help="labels of the points to run")
    t.add_argument("--out", default="docs/rate_distortion")
    r = sub.add_parser("report", help="table.md and rate_distortion.png from the JSON results")
    r.add_argument("--out", default="docs/rate_distortion")
    args = p.parse_args()
    {"train": train, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
