"""Is the multi-stage VAE's second stage worth more than training a one-stage VAE with an l1 loss?

Issue 11, Q3. Four models share the encoder (the MLP ``amortized`` guide), the first stage (linear
map and transposed convolutions to a sigmoid image m1), the latent size, data, seed, epochs, batch
and learning rate; they differ in the decoder's second stage, the likelihood and the objective:

- ``vae-gaussian``: ``multistage_vae --stages 1 --likelihood gaussian``, ELBO (an l2 loss);
- ``vae-laplace``: ``--stages 1 --likelihood laplace``, ELBO (an l1 loss);
- ``multistage``: ``--stages 2`` (refiner m2 = m1 + r(m1)), Cai, Gao & Ji's loss
  KL + w2 ||x - m1||^2 + w1 ||x - m2||_1 (objective ``multistage``; not a bound);
- ``multistage-elbo``: the same two-stage network trained by the ELBO of its own program (x observed
  once, Laplace at m2).

**Fixed scale during training** (``--fixed-scale s``, the same for every model): the per-pixel
scales are frozen at s, so the ELBOs are an l2 loss of weight 1 / (2 s^2) (Gaussian) or an l1 loss of
weight 1 / s (Laplace) plus the KL, and the multistage loss gets the same weights w2 = 1 / (2 s^2),
w1 = 1 / s (the sum of the two fixed-scale likelihoods' losses, as in the paper's loss). With the
models' learned scales (start softplus(0) = 0.69) a budget of a few hundred steps ends with the
latent unused; see :func:`init_scales`.

On dequantized MNIST and Fashion-MNIST, each run reports

- sharpness of the decoder means of ``--n-samples`` prior samples z ~ N(0, I) (and of the coarse
  stage m1 for two-stage models, and of test reconstructions at the posterior mean), next to the
  same numbers for test images (grey / 255): the mean squared image gradient
  ``G = mean((dI/dx)^2 + (dI/dy)^2)`` (forward differences) and the variance of the Laplacian
  (3x3 kernel, valid pixels, per image, averaged). A blurred image has smaller values of both;
- test log-likelihood in bits/dim (``vaezoo.data.bits_per_dim``) by importance sampling with ``--k``
  draws on the first ``--n-eval`` test images (dequantized once with seed 1234), and the ELBO, for the
  program each model defines: x ~ Laplace/N(last stage's mean, per-pixel scale), with the scale
  as trained (fixed at s) and after **refitting the scale in closed form** on training images
  (Laplace: b = E|x - m|, Gaussian: s^2 = E(x - m)^2, z ~ q(z | x): the maximizer of the ELBO in the
  scale, the networks fixed), which is the number to compare.

    OMP_NUM_THREADS=1 python experiments/multistage_sharpness.py train --datasets mnist fashion-mnist \\
        --n-train 10000 --epochs 2 --fixed-scale 0.05 --activation tanh \\
        --refine-channels 16 --refine-blocks 2 --n-eval 200 --k 100 --elbo-k 3 --n-refit 1000 \\
        --n-samples 500 --runs /work/runs/c2f/multistage --out docs/coarse_to_fine/multistage
    python experiments/multistage_sharpness.py report --out docs/coarse_to_fine/multistage

References:
    - Cai, Gao & Ji (2017), Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image
      Generation, arXiv:1705.07202.
    - Theis, van den Oord & Bethge (2016), A note on the evaluation of generative models, ICLR.
    - Pech-Pacheco et al. (2000), Diatom autofocusing in brightfield microscopy: a comparative study
      (variance of the Laplacian as a focus measure), ICPR.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro.poutine as poutine
import torch
import torch.nn.functional as F

from vaezoo import build_model, build_objective, fit, log_likelihood
from vaezoo.data import ImageData, bits_per_dim, load
from vaezoo.distributions.pixel import MIN_SCALE, pixel_scale

EVAL_SEED = 1234
DATASETS = ("mnist", "fashion-mnist")


def matched_weights(scale: float) -> dict[str, float]:
    """The multistage loss's weights equal to the fixed-scale likelihoods' (1 / (2 s^2) and 1 / b)."""
    return {"l2_weight": 1 / (2 * scale**2), "l1_weight": 1 / scale}


#: (label, model overrides, objective, objective overrides from the fixed scale): the models compared.
MODELS: list[tuple[str, dict, str, object]] = [
    ("vae-gaussian", {"stages": 1, "likelihood": "gaussian"}, "elbo", lambda s: {}),
    ("vae-laplace", {"stages": 1, "likelihood": "laplace"}, "elbo", lambda s: {}),
    ("multistage", {"stages": 2, "likelihood": "laplace"}, "multistage", matched_weights),
    ("multistage-elbo", {"stages": 2, "likelihood": "laplace"}, "elbo", lambda s: {}),
]

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def grad_energy(images: torch.Tensor) -> torch.Tensor:
    """Per image, the mean over pixels of (I[i, j+1] - I[i, j])^2 + (I[i+1, j] - I[i, j])^2 (valid pairs)."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return dx.pow(2)[..., :-1, :].flatten(1).mean(1) + dy.pow(2)[..., :, :-1].flatten(1).mean(1)


def laplacian_var(images: torch.Tensor) -> torch.Tensor:
    """Per image, the variance over valid pixels of the 3x3 Laplacian of each channel (averaged)."""
    flat = images.reshape(-1, 1, *images.shape[-2:])
    lap = F.conv2d(flat, LAPLACIAN.to(images)).reshape(images.shape[0], -1)
    return lap.var(1, unbiased=False)


def sharpness(images: torch.Tensor) -> dict[str, list[float]]:
    """``{"grad2": [mean, s.e.], "lapvar": [mean, s.e.]}`` over the images ``(n, C, H, W)``."""
    return {"grad2": summary(grad_energy(images)), "lapvar": summary(laplacian_var(images))}


def summary(t: torch.Tensor) -> list[float]:
    t = t.double()
    return [t.mean().item(), (t.std() / len(t) ** 0.5).item() if len(t) > 1 else 0.0]


def guide_z(guide, x: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """One draw z ~ q(z | x) (or the guide's mean of z)."""
    site = poutine.trace(guide).get_trace(x).nodes["z"]
    return site["fn"].mean if mean else site["value"]


def inverse_scale(scale: torch.Tensor | float) -> torch.Tensor:
    """The raw parameter whose :func:`pixel_scale` is ``scale`` (inverse softplus of scale - MIN_SCALE)."""
    excess = (torch.as_tensor(scale, dtype=torch.float32) - MIN_SCALE).clamp_min(1e-6)
    return excess + torch.log(-torch.expm1(-excess))


@torch.no_grad()
def init_scales(model, scale: float, freeze: bool = False) -> None:
    """Set every per-pixel scale of ``model`` (last and coarse stage) to ``scale``; ``freeze``: keep it.

    Why frozen: learned per-pixel scales start at softplus(0) = 0.69; in a few hundred steps the
    scales of the always-black background shrink while those of the strokes grow, and the latent
    is given up (KL near 0, samples the mean image; measured, see docs/coarse_to_fine/multistage.md).
    A fixed scale makes the ELBO an l2 (Gaussian) or l1 (Laplace) loss with a fixed weight, as in
    the paper's loss; the scale is refit after training for the likelihood.
    """
    for name in ("raw_scale", "raw_coarse_scale"):
        if hasattr(model, name):
            getattr(model, name).fill_(inverse_scale(scale)).requires_grad_(not freeze)


@torch.no_grad()
def refit_scale(model, guide, x: torch.Tensor) -> float:
    """Set the last stage's per-pixel scale to its ELBO maximizer on ``x``; return the mean scale.

    E_q log p(x | z) is, per pixel, -log b - E|x - m|/b (Laplace) or -log s - E(x - m)^2 / (2 s^2)
    (Gaussian) up to constants; the KL does not involve the scale, so b = E|x - m| and
    s = sqrt(E(x - m)^2) maximize the ELBO with one draw of z per image.
    """
    err = []
    for xb in x.split(500):
        m = model.stage_means(guide_z(guide, xb))[-1]
        err.append((xb - m).abs() if model.config.likelihood == "laplace" else (xb - m) ** 2)
    e = torch.cat(err).mean(0)
    scale = e if model.config.likelihood == "laplace" else e.sqrt()
    model.raw_scale.copy_(inverse_scale(scale))
    return scale.mean().item()


def likelihood(model, guide, x: torch.Tensor, k: int, elbo_k: int) -> dict[str, list[float]]:
    """ELBO (nats) and IS log p(x) in bits/dim on ``x`` as [mean, s.e. over images]."""
    elbo = build_objective("elbo", num_particles=elbo_k)
    with torch.no_grad():
        bound = torch.cat([elbo.bound(model, guide, xb) for xb in x.split(250)])
    ll = log_likelihood(model, guide, x, k=k)
    d = x[0].numel()
    return {
        "elbo": summary(bound),
        "bpd_elbo": summary(bits_per_dim(bound, d)),
        "bpd": summary(bits_per_dim(ll.per_datapoint, d)),
        "is_mc_stderr_max": float(ll.mc_stderr.max()),
    }


@torch.no_grad()
def sample_means(model, n: int, z_dim: int) -> list[torch.Tensor]:
    """The stage means [m1(, m2)] of ``n`` prior draws z ~ N(0, I)."""
    return model.stage_means(torch.randn(n, z_dim))


def subset(images: ImageData, n: int) -> ImageData:
    return images if not n else ImageData(images.images[:n], images.labels[:n], images.binarize)


def eval_data(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (at most all) test images: dequantized once with :data:`EVAL_SEED`, and grey / 255."""
    test = load(name, "test", "dequantize")
    n = min(n, len(test))
    torch.manual_seed(EVAL_SEED)
    x = test[torch.arange(n)][0]
    return x, test.images[:n].float() / 255


def evaluate(model, guide, name: str, x_train: torch.Tensor, args) -> tuple[dict, torch.Tensor]:
    """Sharpness, likelihood (as trained and with refit scale) and 64 sample grids for the figure."""
    x, grey = eval_data(name, args.n_eval)
    z_dim = model.config.z_dim
    model.eval(), guide.eval()
    torch.manual_seed(args.seed + 1)
    means = sample_means(model, args.n_samples, z_dim)
    with torch.no_grad():
        recon = model.stage_means(guide_z(guide, x, mean=True))[-1]
    result = {
        "n_eval": len(x),
        "sharpness samples": sharpness(means[-1]),
        "sharpness recon": sharpness(recon),
        "sharpness test": sharpness(grey),
        "recon l1 per pixel": summary((recon - x).abs().flatten(1).mean(1)),
        "recon l2 per pixel": summary((recon - x).pow(2).flatten(1).mean(1)),
    }
    if len(means) == 2:
        result["sharpness samples coarse"] = sharpness(means[0])
    torch.manual_seed(args.seed + 2)
    result["as trained"] = likelihood(model, guide, x, args.k, args.elbo_k)
    result["as trained"]["mean scale"] = pixel_scale(model.raw_scale).mean().item()
    torch.manual_seed(args.seed + 3)
    result["refit scale"] = {"mean scale": refit_scale(model, guide, x_train)}
    result["refit scale"].update(likelihood(model, guide, x, args.k, args.elbo_k))
    grids = torch.stack([m[:64] for m in means]).clamp(0, 1)
    return result, grids


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.datasets:
        images = subset(load(name, "train", "dequantize"), args.n_train)
        torch.manual_seed(EVAL_SEED + 1)
        x_train = images[torch.arange(min(len(images), args.n_refit))][0]
        for label, overrides, objective_name, objective_overrides in MODELS:
            if args.only and label not in args.only:
                continue
            path = out / f"{name}-{label}.json"
            if path.exists():
                print(f"{path} exists, skipped", flush=True)
                continue
            torch.manual_seed(args.seed)
            model = build_model(
                "multistage_vae",
                x_shape=(1, 28, 28),
                z_dim=args.z_dim,
                activation=args.activation,
                refine_channels=args.refine_channels,
                refine_blocks=args.refine_blocks,
                **overrides,
            )
            guide = model.default_guide()
            init_scales(model, args.fixed_scale, freeze=True)  # after the guide, which unfreezes them
            objective = build_objective(objective_name, **objective_overrides(args.fixed_scale))
            run_dir = Path(args.runs) / f"{name}-{label}" if args.runs else None
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
                out=run_dir,
            )
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            result, grids = evaluate(model, guide, name, x_train, args)
            result = {
                "fixed scale": args.fixed_scale,
                "dataset": name,
                "label": label,
                "model": {
                    "name": "multistage_vae",
                    "z_dim": args.z_dim,
                    "activation": args.activation,
                    **overrides,
                    "refine_channels": args.refine_channels,
                    "refine_blocks": args.refine_blocks,
                },
                "objective": objective.describe(),
                "epochs": args.epochs,
                "n_train": len(images),
                "train seconds": seconds,
                "eval seconds": time.perf_counter() - t1,
                "final train loss": history[-1]["train_loss"],
                "n_eval": args.n_eval,
                "k": args.k,
                "elbo_k": args.elbo_k,
                "n_samples": args.n_samples,
                "n_refit": len(x_train),
                **result,
            }
            torch.save(grids, out / f"{name}-{label}.samples.pt")
            path.write_text(json.dumps(result, indent=1))
            print(json.dumps(result), flush=True)


def _cell(v: list[float], fmt: str = ".4f") -> str:
    return f"{v[0]:{fmt}} ± {v[1]:{fmt}}"


def table(rows: list[dict]) -> list[str]:
    """Markdown lines: one table per data set, sharpness (x 1000) and bits/dim per model."""
    lines = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        sel = [r for r in rows if r["dataset"] == name]
        test = sel[0]["sharpness test"]
        lines += [
            f"\n**{name}** (test images: G = {1000 * test['grad2'][0]:.1f}, "
            f"Var(Laplacian) = {1000 * test['lapvar'][0]:.1f}, both x 1000)\n",
            "| model | objective | samples G | samples Var(Lap) | coarse m1 G | recon G | recon l1/pixel "
            "| bits/dim IS (as trained) | bits/dim IS (scale refit) | bits/dim -ELBO (refit) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sel:
            k1000 = {q: [1000 * v for v in r[q]["grad2"]] for q in r if q.startswith("sharpness")}
            lap = [1000 * v for v in r["sharpness samples"]["lapvar"]]
            coarse = (
                _cell(k1000["sharpness samples coarse"], ".2f")
                if "sharpness samples coarse" in k1000
                else "-"
            )
            cells = [
                f"`{r['label']}`",
                r["objective"].split("(")[0],
                _cell(k1000["sharpness samples"], ".2f"),
                _cell(lap, ".2f"),
                coarse,
                _cell(k1000["sharpness recon"], ".2f"),
                _cell(r["recon l1 per pixel"], ".4f"),
                _cell(r["as trained"]["bpd"], ".3f"),
                _cell(r["refit scale"]["bpd"], ".3f"),
                _cell(r["refit scale"]["bpd_elbo"], ".3f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    r0 = rows[0]
    lines.append(
        f"\nBudget: {r0['epochs']} epochs on the first {r0['n_train']} training images, batch 100, "
        f"Adam 1e-3, z_dim {r0['model']['z_dim']}, {r0['model'].get('activation', 'relu')} activations, "
        f"pixel scale fixed at {r0.get('fixed scale')} in training, refiner "
        f"{r0['model']['refine_channels']} channels x {r0['model']['refine_blocks']} blocks. "
        "G = mean squared image gradient, Var(Lap) = variance of "
        f"the Laplacian, both x 1000, of the decoder means of {r0['n_samples']} prior samples (coarse m1: "
        "the first stage of two-stage models; recon: decoder mean at the posterior mean of test images). "
        f"Bits/dim on the first {r0['n_eval']} test images (dequantized with seed {EVAL_SEED}), IS with "
        f"k = {r0['k']}, ELBO with {r0['elbo_k']} draws; scale refit on {r0['n_refit']} training images. "
        "± one standard error over images."
    )
    return lines


def figure(rows: list[dict], out: Path) -> Path | None:
    """Sample grids (8 x 8) side by side: test images, then each model's stage means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    names = list(dict.fromkeys(r["dataset"] for r in rows))
    panels: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name in names:
        _, grey = eval_data(name, 64)
        panels[name] = [("test images", grey)]
        for r in (r for r in rows if r["dataset"] == name):
            path = out / f"{name}-{r['label']}.samples.pt"
            if not path.exists():
                continue
            grids = torch.load(path)
            tags = ["m1", "m2"] if len(grids) == 2 else ["mean"]
            panels[name] += [(f"{r['label']}\n{t}", g) for t, g in zip(tags, grids, strict=True)]
    ncol = max(len(p) for p in panels.values())
    if ncol < 2:
        return None
    fig, axes = plt.subplots(len(names), ncol, figsize=(2.0 * ncol, 2.2 * len(names)), dpi=60, squeeze=False)
    for row, name in zip(axes, names, strict=True):
        for ax in row:
            ax.axis("off")
        for ax, (title, g) in zip(row, panels[name], strict=False):
            ax.imshow(make_grid(g, nrow=8, padding=1, pad_value=1.0)[0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=6)
        row[0].text(
            -0.08, 0.5, name, rotation=90, va="center", ha="right", transform=row[0].transAxes, fontsize=7
        )
    fig.tight_layout()
    path = out / "samples.png"
    fig.savefig(path)
    plt.close(fig)
    from PIL import Image

    Image.open(path).convert("L").save(path, optimize=True)  # grey levels only: a third of the size
    return path


def report(args) -> None:
    out = Path(args.out)
    rows = [
        json.loads((out / f"{name}-{label}.json").read_text())
        for name in DATASETS
        for label, *_ in MODELS
        if (out / f"{name}-{label}.json").exists()
    ]
    if not rows:
        raise SystemExit(f"no results under {out}; run the train subcommand first")
    lines = table(rows)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    path = figure(rows, out)
    print(f"wrote {out / 'table.md'}" + (f" and {path}" if path else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate every model on every data set (skips existing JSON)")
    t.add_argument("--datasets", nargs="*", default=list(DATASETS))
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--n-train", type=int, default=10000, help="first N training images (0: all)")
    t.add_argument("--n-refit", type=int, default=5000, help="training images for the scale refit")
    t.add_argument("--n-eval", type=int, default=500)
    t.add_argument("--n-samples", type=int, default=500)
    t.add_argument("--k", type=int, default=100)
    t.add_argument("--elbo-k", type=int, default=10)
    t.add_argument("--z-dim", type=int, default=32)
    t.add_argument("--refine-channels", type=int, default=16)
    t.add_argument("--refine-blocks", type=int, default=2)
    t.add_argument(
        "--fixed-scale", type=float, default=0.05, help="pixel scale during training (refit after)"
    )
    t.add_argument("--activation", default="tanh", help="decoder activation (relu died at this budget)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--only", nargs="*", default=None, help="labels of the models to run")
    t.add_argument("--runs", default="", help="checkpoint folder (resumable runs); empty: none")
    t.add_argument("--out", default="docs/coarse_to_fine/multistage")
    r = sub.add_parser("report", help="table.md and the sample figure from the JSON results")
    r.add_argument("--out", default="docs/coarse_to_fine/multistage")
    args = p.parse_args()
    {"train": train, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
