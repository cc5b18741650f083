"""Information preference: how much a PixelVAE's latent carries as its decoder's receptive field grows.

Chen et al. (2017) argue that a VAE whose decoder can model x on its own uses the latent only for
what the decoder cannot model locally ("information preference"); Zhao, Song & Ermon (2017) show that
with a decoder family rich enough to fit p(x) alone the ELBO's optimum ignores z. This experiment
trains a one-level ``pixel_vae`` (z of ``--z-dim``, the PixelCNN decoder of ``--layers`` masked
layers of ``--kernel-size``, 0 layers = pixels independent given z) on dynamically binarized MNIST
for every layer count of ``--layers``, each with the plain ELBO and with KL warm-up (the ELBO's
``kl_warmup``; optionally with free bits, objective ``free_bits``), same seed, data and budget. On the
first ``--n-eval`` test images (binarized once with seed 1234) each run reports

- the test ELBO (one draw of z per image, closed-form KL),
- KL = E_x KL(q(z|x) || p(z)) (closed form, :func:`vaezoo.analysis.layer_kl`),
- active units: units u with Cov_x(E_q[z_u | x]) > 0.01 (Burda et al. 2016),
- the test NLL by importance sampling with ``--k`` draws (the guide as proposal),
- training and evaluation wall time.

The receptive field of each layer count (rows above and columns to the left seen, pixels seen away
from the edges, and the fraction of the earlier pixels seen, averaged over the 28x28 image) is
computed from :class:`vaezoo.nets.ReceptiveField`. Commands (the budget of
``docs/coarse_to_fine/information_preference.md``)::

    OMP_NUM_THREADS=1 python experiments/information_preference.py train --layers 0 8 2 4 1 \\
        --n-train 16000 --epochs 1 --batch-size 50 --lr 2e-3 --warmup 0.5 --n-eval 200 --k 25 \\
        --runs /work/runs/c2f/info
    python experiments/information_preference.py report

References:
    - Chen, Kingma, Salimans, Duan, Dhariwal, Schulman, Sutskever & Abbeel (2017), Variational Lossy
      Autoencoder, ICLR.
    - Zhao, Song & Ermon (2017), Towards Deeper Understanding of Variational Autoencoding Models,
      arXiv:1702.08658.
    - Gulrajani et al. (2017), PixelVAE: A Latent Variable Model for Natural Images, ICLR.
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR (active units).
    - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational Inference
      with Inverse Autoregressive Flow, NIPS (free bits).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro.distributions as dist
import torch
from pyro import poutine
from torch.distributions import kl_divergence

from vaezoo import build_model, build_objective, fit, log_likelihood
from vaezoo.analysis import active_units, layer_kl, posterior_means
from vaezoo.checkpoint import restore
from vaezoo.data import ImageData, load
from vaezoo.nets import ReceptiveField, receptive_field

EVAL_SEED = 1234
OUT = "docs/coarse_to_fine/information_preference"
#: nats: a unit whose KL averaged over the test images exceeds this carries information (our choice)
UNIT_KL = 0.1


def informative_units(r: dict) -> int | None:
    """Units of run ``r`` with E_x KL above :data:`UNIT_KL`, or None if the JSON lacks unit KLs."""
    return sum(v > UNIT_KL for v in r["unit kl"]) if "unit kl" in r else None


def variants(warmup: float, free_bits: float) -> dict[str, tuple[str, dict]]:
    """Objective name and config of every variant: the plain ELBO, warm-up, free bits."""
    return {
        "elbo": ("elbo", {}),
        "warmup": ("elbo", {"kl_warmup": warmup}),
        "free_bits": ("free_bits", {"lam": free_bits}),
    }


def seen_fraction(field: ReceptiveField, height: int, width: int) -> float:
    """Fraction of the earlier pixels (raster order) that the field sees, averaged over the image.

    The first pixel has no earlier pixel and is left out of the average.
    """
    total, count = 0.0, 0
    for i in range(height):
        for j in range(width):
            earlier = i * width + j
            if earlier == 0:
                continue
            seen = sum(
                field.sees(i - a, b - j)
                for a in range(max(0, i - field.up), i + 1)
                for b in range(width)
                if a * width + b < earlier
            )
            total += seen / earlier
            count += 1
    return total / count


def field_summary(layers: int, kernel_size: int, height: int = 28, width: int = 28) -> dict[str, float]:
    """Rows up, columns left, pixels seen (unbounded image) and the mean seen fraction on the image."""
    f = receptive_field(layers, kernel_size)
    return {
        "rows up": f.up,
        "columns left": f.left,
        "pixels seen": f.size,
        "fraction of earlier pixels seen": seen_fraction(f, height, width),
    }


def unit_kls(guide, x: torch.Tensor) -> torch.Tensor:
    """E_x KL(q(z_u | x) || N(0, 1)) of every unit u of ``z``, shape ``(z_dim,)``, in nats.

    For the one-level PixelVAE, whose prior is N(0, I) and whose guide is a diagonal Gaussian:
    the KL of :func:`~vaezoo.analysis.layer_kl` split by unit (the units' KLs sum to it).
    """
    with torch.no_grad():
        q = poutine.trace(guide).get_trace(x).nodes["z"]["fn"].base_dist
    kl = kl_divergence(q, dist.Normal(torch.zeros_like(q.loc), 1.0))
    return kl.reshape(-1, kl.shape[-1]).mean(0)


def evaluate(model, guide, x: torch.Tensor, k: int, batch: int) -> dict:
    """ELBO, KL, active units and IS NLL on ``x``; means with their standard error over the images."""
    kl = layer_kl(model, guide, x, batch_size=batch)["z"]
    means = posterior_means(model, guide, x, num_particles=1, batch_size=batch)
    elbo = build_objective("elbo")
    with torch.no_grad():
        bound = torch.cat([elbo.bound(model, guide, xb) for xb in x.split(batch)])
    # A chunk of particles holds k' * batch images of PixelCNN activations; keep it near 1250 images.
    ll = log_likelihood(model, guide, x, k=k, batch_size=batch, max_elements=1250 * x[0].numel())

    def summary(t: torch.Tensor) -> list[float]:
        return [t.mean().item(), (t.std() / len(t) ** 0.5).item()]

    return {
        "elbo": summary(bound),
        "kl": summary(kl),
        "active units": active_units(means)["z"],
        "units": means.mean["z"].shape[1],
        "nll": summary(-ll.per_datapoint),
        "nll mc stderr": ll.stderr,
        "unit kl": unit_kls(guide, x).tolist(),
    }


def one_run(label: str, layers: int, objective, images, x_test, args) -> dict:
    """Train one PixelVAE with ``objective`` and evaluate it on ``x_test``."""
    torch.manual_seed(args.seed)
    model = build_model(
        "pixel_vae", levels=1, z_dim=args.z_dim, layers=layers, kernel_size=args.kernel_size,
        channels=args.channels, upsample_channels=tuple(args.upsample_channels),
    )
    guide = model.default_guide()
    out = Path(args.runs) / label if args.runs else None
    t0 = time.perf_counter()
    history = fit(
        model, guide, images, objective, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, progress=False, out=out,
    )
    seconds = time.perf_counter() - t0
    torch.manual_seed(args.seed + 1)
    t1 = time.perf_counter()
    metrics = evaluate(model, guide, x_test, args.k, args.eval_batch)
    return {
        "label": label,
        "layers": layers,
        "kernel_size": args.kernel_size,
        "channels": args.channels,
        "upsample_channels": list(args.upsample_channels),
        "lr": args.lr,
        "receptive field": field_summary(layers, args.kernel_size, *model.x_shape[1:]),
        "objective": objective.describe(),
        "z_dim": args.z_dim,
        "epochs": args.epochs,
        "n_train": len(images),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "train seconds": seconds,
        "train loss per epoch": [h["train_loss"] for h in history],
        "n_eval": len(x_test),
        "k": args.k,
        "eval batch": args.eval_batch,
        "eval seconds": time.perf_counter() - t1,
        **metrics,
    }


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    images = load("mnist", "train", "dynamic")
    if args.n_train:
        images = ImageData(images.images[: args.n_train], images.labels[: args.n_train], images.binarize)
    x_test = load("mnist", "test", "static", seed=EVAL_SEED).fixed[: args.n_eval]
    table = variants(args.warmup, args.free_bits)
    for layers in args.layers:
        for variant in args.variants:
            label = f"L{layers}-{variant}"
            path = out / f"{label}.json"
            if path.exists():
                print(f"{label}: {path} exists, skipped", flush=True)
                continue
            name, overrides = table[variant]
            result = one_run(label, layers, build_objective(name, **overrides), images, x_test, args)
            path.write_text(json.dumps(result, indent=1))
            print(json.dumps(result), flush=True)


def units(args) -> None:
    """Add the per-unit KL to runs evaluated before it was recorded, from their checkpoints."""
    x_test = load("mnist", "test", "static", seed=EVAL_SEED).fixed
    for path in sorted(Path(args.out).glob("L*-*.json")):
        r = json.loads(path.read_text())
        if "unit kl" in r:
            continue
        _, guide, _, _ = restore(Path(args.runs) / r["label"] / "checkpoint.pt")
        r["unit kl"] = unit_kls(guide, x_test[: r["n_eval"]]).tolist()
        path.write_text(json.dumps(r, indent=1))
        print(f"{r['label']}: unit KLs added", flush=True)


def load_rows(out: Path) -> list[dict]:
    """Every run's JSON under ``out``, sorted by layer count then variant."""
    rows = [json.loads(p.read_text()) for p in out.glob("L*-*.json")]
    if not rows:
        raise SystemExit(f"no results under {out}; run the train subcommand first")
    return sorted(rows, key=lambda r: (r["layers"], r["label"]))


def table_lines(rows: list[dict]) -> list[str]:
    """The markdown table of every run."""
    lines = [
        "| layers | receptive field: rows up / pixels seen / share of earlier pixels | objective "
        f"| test ELBO | KL(q‖p) | active units (Burda) | units with KL > {UNIT_KL:g} "
        "| test NLL (IS) | train min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["receptive field"]
        field = f"{f['rows up']} / {f['pixels seen']} / {100 * f['fraction of earlier pixels seen']:.0f}%"
        lines.append(
            f"| {r['layers']} | {field} | `{r['objective']}` | {r['elbo'][0]:.2f} ± {r['elbo'][1]:.2f} "
            f"| {r['kl'][0]:.2f} ± {r['kl'][1]:.2f} | {r['active units']}/{r['units']} "
            f"| {'n/a' if informative_units(r) is None else informative_units(r)}/{r['units']} "
            f"| {r['nll'][0]:.2f} ± {r['nll'][1]:.2f} | {r['train seconds'] / 60:.1f} |"
        )
    r0 = rows[0]
    lines.append(
        f"\n{r0['epochs']} epoch(s) on the first {r0['n_train']} training images (batch {r0['batch_size']}, "
        f"Adam {r0['lr']:g}, seed {r0['seed']}), z of {r0['z_dim']} dimensions, PixelCNN layers of "
        f"{r0['channels']} channels and kernel size {r0['kernel_size']}; "
        f"evaluated on the first {r0['n_eval']} test images (binarized with seed {EVAL_SEED}); ELBO with one "
        f"draw of z, NLL by IS with k = {r0['k']}; ± one standard error over the images (the Monte Carlo "
        "s.e. of the NLL is in the JSON files). Training minutes are indicative only (a shared machine)."
    )
    return lines


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    rows = load_rows(out)
    lines = table_lines(rows)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    panels = (
        ("kl", "KL(q(z|x) || p(z)) (nats)"),
        ("active units", f"active units (Burda; dashed: KL > {UNIT_KL:g} nats)"),
        ("nll", "test NLL (nats)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), dpi=80)
    for ax, (key, title) in zip(axes, panels, strict=True):
        for variant in sorted({r["label"].split("-", 1)[1] for r in rows}):
            sel = [r for r in rows if r["label"].split("-", 1)[1] == variant]
            ys = [r[key][0] if isinstance(r[key], list) else r[key] for r in sel]
            line = ax.plot([r["layers"] for r in sel], ys, marker="o", label=variant)[0]
            if key == "active units" and all("unit kl" in r for r in sel):
                ax.plot([r["layers"] for r in sel], [informative_units(r) for r in sel], marker="x",
                        ls="--", color=line.get_color())
        ax.set_xlabel("PixelCNN layers (0: factorized decoder)")
        ax.set_title(title, fontsize=9)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(sorted({r["layers"] for r in rows}))
        ax.set_xticklabels([str(v) for v in sorted({r["layers"] for r in rows})])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "information_preference.png")
    print(f"wrote {out / 'table.md'} and {out / 'information_preference.png'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate every run of the sweep (skips existing JSON)")
    t.add_argument("--layers", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    t.add_argument(
        "--variants", nargs="+", default=["elbo", "warmup"], choices=["elbo", "warmup", "free_bits"]
    )
    t.add_argument("--kernel-size", type=int, default=5)
    t.add_argument("--channels", type=int, default=8, help="channels of every gated PixelCNN layer")
    t.add_argument(
        "--upsample-channels", type=int, nargs="*", default=[],
        help="transposed convolutions from z to the condition map (none: one dense layer)",
    )
    t.add_argument("--z-dim", type=int, default=32)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--warmup", type=float, default=0.5, help="epochs of KL warm-up (variant warmup)")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--free-bits", type=float, default=0.25, help="lambda in nats per dimension (free_bits)")
    t.add_argument("--n-train", type=int, default=16000, help="first N training images (0: all)")
    t.add_argument("--batch-size", type=int, default=50)
    t.add_argument("--n-eval", type=int, default=200)
    t.add_argument("--k", type=int, default=25)
    t.add_argument("--eval-batch", type=int, default=25, help="test images per IS batch (k x them in memory)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--runs", default="", help="folder for checkpoints (resumable); empty: none")
    t.add_argument("--out", default=OUT)
    u = sub.add_parser("units", help="add per-unit KLs to runs without them (reads their checkpoints)")
    u.add_argument("--runs", required=True)
    u.add_argument("--out", default=OUT)
    r = sub.add_parser("report", help="table.md and information_preference.png from the JSON results")
    r.add_argument("--out", default=OUT)
    args = p.parse_args(argv)
    {"train": train, "units": units, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
