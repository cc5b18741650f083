"""Does the bottom layer alone suffice to sample? Gibbs chains on z_1 of a Markov HVAE (issue 11, Q4).

Zhao, Song & Ermon (2017), Proposition 1: in a Markov HVAE whose q(z_1|x) is the true posterior,
the chain z_1 ~ q(z_1|x), x ~ p(x|z_1) has the data distribution as its stationary distribution, so
the layers above z_1 are not needed to sample. We train ``markov_hvae`` models (``train``), then
(``eval``) draw ancestral samples through all layers, run that two-step chain for t steps from test
images, from ancestral samples and from Bernoulli(1/2) noise, and score every set of samples with a
small CNN classifier trained here on dynamically binarized MNIST: the Inception-score analogue
exp(E_x KL(p(y|x) || p(y))), the mean predictive entropy E_x H(p(y|x)) (confidence), the entropies of
p(y) and of the histogram of argmax labels (diversity), a Fréchet distance between Gaussians fitted
to the classifier's penultimate features of the samples and of held-out test images (a small-CNN
analogue of FID, not comparable with Inception FID), the ink (mean pixel) and, for chains, how often
the predicted label is still that of the chain's start. Every sample is a binary draw from the
Bernoulli decoder, as the chain's x is; the test images are binarized once (seed 1234). Intervals
are bootstrap percentiles over the samples, the reference features held fixed. ``report`` writes
the table into ``gibbs.md`` (between markers) and the score-vs-t plot.

The budget of docs/coarse_to_fine/gibbs.md (the defaults; 22 min on a 2-core machine under a load
average of 7-11), with ``--runs /work/runs/c2f/gibbs`` before each subcommand there:

    OMP_NUM_THREADS=1 python experiments/gibbs_bottom_layer.py train --epochs 3 --clf-epochs 1
    OMP_NUM_THREADS=1 python experiments/gibbs_bottom_layer.py --models markov_hvae-5-bn-wu eval
    OMP_NUM_THREADS=1 python experiments/gibbs_bottom_layer.py --models markov_hvae-3 eval --max-steps 200
    python experiments/gibbs_bottom_layer.py report

A chain started from ancestral samples starts at the model's marginal p(x); were q(z_1|x) the exact
posterior, it would stay there at every t, so its drift measures what the amortized q costs.

References:
    - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
    - Salimans et al. (2016), Improved Techniques for Training GANs, NIPS (the Inception score).
    - Heusel et al. (2017), GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
      Equilibrium, NIPS (the Fréchet distance between feature Gaussians, FID).
    - Sønderby et al. (2016), Ladder Variational Autoencoders, NIPS (BN + KL warm-up).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo import build_model, build_objective, fit, log_likelihood
from vaezoo.analysis import layer_kl
from vaezoo.data import load

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED = 1234  # the project's fixed binarization of the test set
STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
STARTS = ("test", "ancestral", "noise")
#: name -> (markov_hvae config, KL warm-up as a fraction of the epochs)
MODELS = {
    "markov_hvae-5-bn-wu": (
        {"z_dims": (64, 32, 16, 8, 4), "hidden": (512, 256, 128, 64, 32), "batch_norm": True},
        0.5,
    ),
    "markov_hvae-3": ({"z_dims": (64, 32, 16), "hidden": (512, 256, 128), "batch_norm": False}, 0.0),
}
START, END = "<!-- table:start -->", "<!-- table:end -->"


class Classifier(nn.Module):
    """Two conv blocks and a 128-unit penultimate layer: ``features`` feed the Fréchet distance."""

    def __init__(self, width: int = 16, features: int = 128):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * 49, features), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        return self.head(h), h


@torch.no_grad()
def classify(clf: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p(y|x), penultimate features) in float64, in batches."""
    out = [clf(xb) for xb in x.split(500)]
    probs = torch.cat([o[0] for o in out]).softmax(-1).double()
    return probs, torch.cat([o[1] for o in out]).double()


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), the squared W2 distance of two Gaussians."""
    vals, vecs = torch.linalg.eigh(cov1)
    root1 = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross)


def gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return features.mean(0), torch.cov(features.T)


def inception_analogue(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x) over the samples."""
    marginal = probs.mean(0, keepdim=True)
    kl = torch.xlogy(probs, probs).sum(1) - (probs * marginal.log()).sum(1)
    return math.exp(kl.mean().item())


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -torch.xlogy(p, p).sum(-1)


def scores(probs, feats, reference, x, start_labels=None, boot: int = 200, seed: int = 0) -> dict:
    """Every score of one sample set as [value, bootstrap s.e., 2.5%, 97.5%] (resampling the samples)."""
    n = len(probs)
    labels = probs.argmax(1)

    def stats(idx: torch.Tensor) -> dict[str, float]:
        p = probs[idx]
        s = {
            "is": inception_analogue(p),
            "entropy": entropy(p).mean().item(),
            "marginal_entropy": entropy(p.mean(0)).item(),
            "label_entropy": entropy(torch.bincount(labels[idx], minlength=10).double() / len(idx)).item()
            + 0.0,  # no -0.0
            "fd": frechet_distance(*gaussian(feats[idx]), *reference),
            "ink": x[idx].mean().item(),
        }
        if start_labels is not None:
            s["same_label"] = (labels[idx] == start_labels[idx]).double().mean().item()
        return s

    point = stats(torch.arange(n))
    g = torch.Generator().manual_seed(seed)
    draws = [stats(torch.randint(n, (n,), generator=g)) for _ in range(boot)]
    out = {}
    for key, value in point.items():
        spread = torch.tensor([d[key] for d in draws], dtype=torch.float64)
        lo, hi = spread.quantile(torch.tensor([0.025, 0.975], dtype=torch.float64))
        # The bootstrap's duplicates bias the Fréchet distance upwards, so its percentile interval may
        # miss the point value; the spread of the replicates (the s.e.) is still the honest error bar.
        out[key] = [value, spread.std().item(), lo.item(), hi.item()]
    return out


@torch.no_grad()
def ancestral(model, n: int) -> torch.Tensor:
    """Binary draws of x through every layer: z_L ~ N(0, I), ..., z_1 ~ p(z_1|z_2), x ~ p(x|z_1)."""
    upper: list[torch.Tensor] = []
    like = torch.zeros(())
    for j in reversed(range(model.num_layers)):
        upper.insert(0, model.z_dist(j, upper, n, like, model.top_down).sample())
    return model.x_dist(upper).sample()


@torch.no_grad()
def gibbs_step(model, guide, x: torch.Tensor) -> torch.Tensor:
    """One step of the bottom-layer chain: z_1 ~ q(z_1|x), then a binary draw x ~ p(x|z_1).

    Only the guide's first factor and the decoder are used; the layers above z_1 never enter.
    """
    z1 = pyro.poutine.trace(guide).get_trace(x).nodes[model.layer_sites[0]]["value"]
    return model.x_dist([z1]).sample()


def train_classifier(train, test, epochs: int, seed: int) -> tuple[Classifier, float]:
    torch.manual_seed(seed)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(train)).split(128):
            x, y = train[idx]  # a fresh binarization every time (dynamic)
            loss = F.cross_entropy(clf(x)[0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    probs, _ = classify(clf, test.fixed)
    return clf, (probs.argmax(1) == test.labels).double().mean().item()


def data(args):
    train = load("mnist", "train", "dynamic")
    if args.n_train:
        train.images, train.labels = train.images[: args.n_train], train.labels[: args.n_train]
    return train, load("mnist", "test", "static", seed=EVAL_SEED)


def build(name: str, smoke: bool):
    config = dict(MODELS[name][0], activation="leaky_relu")
    if smoke:
        config["hidden"] = (16,)
    model = build_model("markov_hvae", **config)
    return model, model.default_guide()


def train(args) -> None:
    runs, out = Path(args.runs), Path(args.out)
    runs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    train_set, test = data(args)
    if not (runs / "classifier.pt").exists():
        t0 = time.perf_counter()
        clf, acc = train_classifier(train_set, test, args.clf_epochs, args.seed)
        torch.save(clf.state_dict(), runs / "classifier.pt")
        meta = {"test_accuracy": acc, "n_test": len(test), "epochs": args.clf_epochs}
        meta["seconds"] = time.perf_counter() - t0
        (out / "classifier.json").write_text(json.dumps(meta, indent=1))
        print(f"classifier: {meta}", flush=True)
    x_eval = test.fixed[: args.n_nll]
    for name in args.models:
        if (runs / name / "final.pt").exists():
            print(f"{name}: trained before, skipped", flush=True)
            continue
        pyro.set_rng_seed(args.seed)
        model, guide = build(name, args.smoke)
        t0 = time.perf_counter()
        objective = build_objective("elbo", kl_warmup=MODELS[name][1] * args.epochs)
        history = fit(model, guide, train_set, objective, epochs=args.epochs, out=runs / name,
                      seed=args.seed, progress=False, validate=False)  # fmt: skip
        seconds = time.perf_counter() - t0
        model.eval(), guide.eval()
        ll = log_likelihood(model, guide, x_eval, k=args.k)
        kl = {k: v.mean().item() for k, v in layer_kl(model, guide, x_eval).items()}
        torch.save({"model": model.state_dict(), "guide": guide.state_dict()}, runs / name / "final.pt")
        meta = {"model": name, "config": str(model.config), "epochs": args.epochs, "n_train": len(train_set),
                "warmup_epochs": MODELS[name][1] * args.epochs, "train_seconds": seconds,
                "final_train_loss": history[-1]["train_loss"], "nll": [-ll.mean, ll.data_stderr],
                "nll_k": args.k, "nll_n": len(x_eval), "layer_kl": kl}  # fmt: skip
        (out / f"train-{name}.json").write_text(json.dumps(meta, indent=1))
        print(json.dumps(meta), flush=True)


def evaluate(args) -> None:
    runs, out = Path(args.runs), Path(args.out)
    _, test = data(args)
    clf = Classifier()
    clf.load_state_dict(torch.load(runs / "classifier.pt", weights_only=True))
    clf.eval()
    n = args.n_samples
    x_test, start_labels = test.fixed[:n], test.labels[:n]
    reference = gaussian(classify(clf, test.fixed[n:])[1])  # held-out test images, fixed
    steps = [t for t in STEPS if t <= args.max_steps]
    for name in args.models:
        t0 = time.perf_counter()
        model, guide = build(name, args.smoke)
        state = torch.load(runs / name / "final.pt", weights_only=True)
        model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
        model.eval(), guide.eval()
        pyro.set_rng_seed(args.seed)

        def score(x, labels=None):
            probs, feats = classify(clf, x)
            return scores(probs, feats, reference, x, labels, boot=args.boot, seed=args.seed)

        result = {"model": name, "n_samples": n, "n_reference": len(test) - n, "boot": args.boot,
                  "samples": "binary draws", "test": score(x_test, start_labels)}  # fmt: skip
        x_anc = ancestral(model, n)
        result["ancestral"] = score(x_anc)
        grid = {"test": x_test[:16], "ancestral": x_anc[:16]}
        for start, x in (
            ("test", x_test),
            ("ancestral", x_anc),
            ("noise", torch.bernoulli(torch.full_like(x_test, 0.5))),
        ):
            labels = start_labels if start == "test" else classify(clf, x)[0].argmax(1)
            chain, t = {}, 0
            for target in steps:
                while t < target:
                    x, t = gibbs_step(model, guide, x), t + 1
                chain[str(t)] = score(x, labels)
                if t in (1, 10, 100, 1000):
                    grid[f"{start} t={t}"] = x[:16]
            result[f"gibbs from {start}"] = chain
            print(
                f"{name} from {start}: {json.dumps({k: round(v['fd'][0], 2) for k, v in chain.items()})}",
                flush=True,
            )
        result["eval_seconds"] = time.perf_counter() - t0
        (out / f"eval-{name}.json").write_text(json.dumps(result, indent=1))
        write_grid(grid, out / f"samples-{name}.png")


def write_grid(grid: dict[str, torch.Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [torch.cat(list(x.squeeze(1)), dim=1) for x in grid.values()]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 0.2), dpi=80)
    ax.imshow(torch.cat(rows).numpy(), cmap="gray_r", interpolation="nearest")
    side = rows[0].shape[0]
    ax.set_yticks([side * (i + 0.5) for i in range(len(rows))], list(grid), fontsize=7)
    ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


SHOWN = ("1", "10", "100", "1000")
COLUMNS = (("is", "IS analogue", 2), ("entropy", "E H(y|x)", 3), ("marginal_entropy", "H(p(y))", 3),
           ("label_entropy", "H(labels)", 3), ("fd", "Fréchet distance", 2), ("ink", "ink", 3),
           ("same_label", "label of start kept", 3))  # fmt: skip


def cell(v: list[float] | None, digits: int) -> str:
    return "–" if v is None else f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"


def table(ev: dict, tr: dict | None) -> list[str]:
    rows = [("held-out test images", ev["test"]), ("ancestral (all layers)", ev["ancestral"])]
    for start in STARTS:
        chain = ev[f"gibbs from {start}"]
        rows += [(f"Gibbs from {start}, t = {t}", chain[t]) for t in SHOWN if t in chain]
    head = f"### `{ev['model']}`\n\n"
    if tr:
        kl = " / ".join(f"{v:.1f}" for v in tr["layer_kl"].values())
        head += (
            f"{tr['epochs']} epochs on {tr['n_train']} images (KL warm-up {tr['warmup_epochs']:g} "
            f"epochs), {tr['train_seconds']:.0f} s; test NLL {tr['nll'][0]:.2f} ± {tr['nll'][1]:.2f} "
            f"nats (IS k = {tr['nll_k']}, first {tr['nll_n']} test images); KL per layer z1..zL "
            f"{kl} nats.\n\n"
        )
    lines = [
        head + "| samples | " + " | ".join(c[1] for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for label, s in rows:
        lines.append(f"| {label} | " + " | ".join(cell(s.get(k), d) for k, _, d in COLUMNS) + " |")
    return lines


def plot(evals: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("is", "IS analogue"), ("fd", "Fréchet distance"), ("entropy", "E H(y|x) (nats)"),
            ("same_label", "label of start kept"))  # fmt: skip
    fig, axes = plt.subplots(len(evals), 4, figsize=(11, 2.6 * len(evals)), dpi=70, squeeze=False)
    for row, ev in zip(axes, evals, strict=True):
        for ax, (key, title) in zip(row, keys, strict=True):
            for start in STARTS:
                chain = ev[f"gibbs from {start}"]
                t = [int(s) for s in chain]
                v = torch.tensor([chain[s][key] for s in chain])
                ax.plot(t, v[:, 0], marker=".", label=f"Gibbs from {start}")
                ax.fill_between(t, v[:, 2], v[:, 3], alpha=0.2)
            if key != "same_label":
                ax.axhline(ev["test"][key][0], color="k", ls="--", lw=0.8, label="test images")
                ax.axhline(ev["ancestral"][key][0], color="gray", ls=":", lw=1.2, label="ancestral")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(0, max(t))
            if key == "fd":  # noise starts far away; a log scale keeps the data-level rows visible
                ax.set_yscale("log")
            ax.set_xlabel("Gibbs steps t")
            ax.set_title(f"{ev['model']}: {title}", fontsize=8)
        row[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(args) -> None:
    import os

    out = Path(args.out)
    md = Path(args.md) if args.md else ROOT / "docs" / "coarse_to_fine" / "gibbs.md"
    evals = [
        json.loads((out / f"eval-{m}.json").read_text())
        for m in args.models
        if (out / f"eval-{m}.json").exists()
    ]
    if not evals:
        raise SystemExit(f"no eval-*.json under {out}; run the train and eval subcommands first")
    clf = json.loads((out / "classifier.json").read_text())
    rel = os.path.relpath(out, md.parent)
    e0 = evals[0]
    lines = [
        f"Classifier: test accuracy {clf['test_accuracy']:.4f} on the {clf['n_test']} binarized test "
        f"images ({clf['epochs']} epochs, {clf['seconds']:.0f} s). Scores of {e0['n_samples']} samples "
        f"({e0['samples']}) per row; Fréchet distance to the Gaussian of the other {e0['n_reference']} "
        f"test images; ± the bootstrap standard error ({e0['boot']} resamples of the samples; the "
        "percentile intervals are in the JSON files and shaded in the plot).\n"
    ]
    for ev in evals:
        path = out / f"train-{ev['model']}.json"
        lines += table(ev, json.loads(path.read_text()) if path.exists() else None)
        lines.append(f"\n![samples]({rel}/samples-{ev['model']}.png)\n")
    plot(evals, out / "scores_vs_t.png")
    lines.append(f"![scores vs t]({rel}/scores_vs_t.png)")
    body = "\n".join(lines)
    text = md.read_text() if md.exists() else f"# Gibbs chains on the bottom layer\n\n{START}\n{END}\n"
    head, rest = text.split(START)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(f"{head}{START}\n{body}\n{END}{rest.split(END, 1)[1]}")
    print(body)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="seconds-long run: tiny networks, data and chains")
    p.add_argument("--runs", default=str(ROOT / "runs" / "gibbs"), help="checkpoints (not in git)")
    p.add_argument("--out", default=str(ROOT / "docs" / "coarse_to_fine" / "gibbs"), help="JSON and PNGs")
    p.add_argument("--md", default=None, help="markdown page (default docs/coarse_to_fine/gibbs.md)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from: {', '.join(MODELS)}")
    p.add_argument("--seed", type=int, default=0)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="the classifier and every model (skips finished ones)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--clf-epochs", type=int, default=1)
    t.add_argument("--n-train", type=int, default=0, help="first N training images (0: all 60k)")
    t.add_argument("--n-nll", type=int, default=500, help="test images for the IS NLL")
    t.add_argument("--k", type=int, default=100, help="importance samples for the NLL")
    e = sub.add_parser("eval", help="samples, chains and scores of every trained model")
    e.add_argument("--n-samples", type=int, default=500)
    e.add_argument("--max-steps", type=int, default=1000)
    e.add_argument("--boot", type=int, default=100)
    sub.add_parser("report", help="the table in the markdown page and scores_vs_t.png")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from: {', '.join(MODELS)}")
    if args.smoke:
        args.n_train = 300
        if args.command == "train":
            args.epochs, args.clf_epochs, args.n_nll, args.k = 1, 1, 20, 4
        if args.command == "eval":
            args.n_samples, args.max_steps, args.boot = 16, 10, 5
    else:
        args.n_train = getattr(args, "n_train", 0)
    torch.set_num_threads(1)
    {"train": train, "eval": evaluate, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
