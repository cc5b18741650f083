"""The multimodal VAE (Wu & Goodman 2018) against a joint-encoder-only MVAE and one VAE per modality.

For each bimodal data set (``mnist-label``, ``fashion-mnist-label``, ``mnist-flip``) three runs:

- ``mvae``: MVAE + product-of-experts guide + the sub-sampled objective ELBO(x,y) + ELBO(x) + ELBO(y);
- ``joint``: the same model and guide trained with the joint ELBO only (``elbo``), so the
  single-modality experts are never trained to stand alone;
- ``vae``: the ``vae`` model on the images x alone (the unimodal reference for log p(x)).

Measured on the first ``--n-eval`` test pairs (binarized once with seed 1234), importance sampling
with ``--k`` particles: log p(x), log p(x, y), log p(y | x) = log p̂(x, y) - log p̂(x) (a difference of
two IS estimates, each a stochastic lower bound, so not a bound itself); image -> label accuracy of
the posterior predictive p(y | x) ≈ mean_s p(y | z_s), z_s ~ q(z | x); label -> image (or image ->
flipped image) generation judged by a small CNN trained here on the real images. Writes
``OUT/<data set>.json`` and a PNG of cross-modal samples per data set.

    OMP_NUM_THREADS=1 python experiments/mvae.py --epochs 2 --n-train 60000 --n-eval 500 --k 500 \
        --out docs/multimodal
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import save_image

from vaezoo import build_model, build_objective, fit, log_likelihood
from vaezoo.data import ImageData, load
from vaezoo.multimodal import MultimodalBatch, MultimodalDataset
from vaezoo.multimodal_data import load_pair
from vaezoo.nets import evaluating

EVAL_SEED = 1234


class Classifier(nn.Module):
    """A small CNN for 28x28 images: two conv + pool layers and a linear read-out."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def train_classifier(name: str, epochs: int, seed: int) -> tuple[Classifier, dict[str, float]]:
    """A CNN on the grey-level training images (so it reads Bernoulli means as well as binary
    images); returns it with its test accuracy on binarized and on grey-level test images."""
    torch.manual_seed(seed)
    train, test = load(name, "train", "none"), load(name, "test", "static", seed=EVAL_SEED)
    grey = load(name, "test", "none")
    net = Classifier()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(train)).split(100):
            x, y = train[idx]
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    acc = {}
    with torch.no_grad():
        for kind, data in (("binarized", test), ("grey", grey)):
            x, y = data[torch.arange(len(data))]
            acc[kind] = (net(x).argmax(-1) == y).float().mean().item()
    return net, acc


def mvae_metrics(model, guide, batch: MultimodalBatch, labels, k: int, classifier, y_kind: str) -> dict:
    both = log_likelihood(model, guide, batch, k=k)
    x_only = log_likelihood(model, guide, batch.restrict(["x"]), k=k)
    y_only = log_likelihood(model, guide, batch.restrict(["y"]), k=k)
    cond = both - x_only
    out = {
        "log p(x)": [x_only.mean, x_only.stderr],
        "log p(x,y)": [both.mean, both.stderr],
        "log p(y)": [y_only.mean, y_only.stderr],
        "log p(y|x)": [cond.mean, cond.stderr],
        "ELBO(x,y)": guide_bound(model, guide, batch),
    }
    with torch.no_grad(), evaluating(model, guide):
        loc, scale = guide.posterior(batch.restrict(["x"]))
        z = loc + scale * torch.randn(100, *loc.shape)
        if y_kind == "label":
            p_y = model.modality_dist("y", z).probs.mean(0)
            out["x->y accuracy"] = (p_y.argmax(-1) == labels).float().mean().item()
            gen_y = torch.arange(10).repeat_interleave(100)
            loc, scale = guide.posterior(
                MultimodalBatch(
                    {"x": torch.zeros(1000, 1, 28, 28), "y": gen_y},
                    {"x": torch.zeros(1000, dtype=torch.bool)},
                )
            )
            images = model.modality_dist("x", loc + scale * torch.randn_like(loc)).mean
            out["y->x accuracy (CNN)"] = (classifier(images).argmax(-1) == gen_y).float().mean().item()
        else:
            images = model.modality_dist("y", z[0]).mean.flip(-2)  # flipped back for the classifier
            out["x->y digit kept (CNN)"] = (classifier(images).argmax(-1) == labels).float().mean().item()
            loc, scale = guide.posterior(batch.restrict(["y"]))
            back = model.modality_dist("x", loc + scale * torch.randn_like(loc)).mean
            out["y->x digit kept (CNN)"] = (classifier(back).argmax(-1) == labels).float().mean().item()
    return out


def guide_bound(model, guide, batch) -> float:
    with torch.no_grad(), evaluating(model, guide):
        return build_objective("elbo").bound(model, guide, batch).mean().item()


def figure(model, guide, batch, y_kind: str, path: Path) -> None:
    """Label -> image: one row per class (8 samples). Image -> flipped image: inputs, then samples."""
    with torch.no_grad(), evaluating(model, guide):
        if y_kind == "label":
            y = torch.arange(10).repeat_interleave(8)
            b = MultimodalBatch(
                {"x": torch.zeros(80, 1, 28, 28), "y": y}, {"x": torch.zeros(80, dtype=torch.bool)}
            )
            loc, scale = guide.posterior(b)
            images = model.modality_dist("x", loc + scale * torch.randn_like(loc)).mean
        else:
            src = batch.take(torch.arange(8)).restrict(["x"])
            loc, scale = guide.posterior(src)
            rows = [src.values["x"]] + [
                model.modality_dist("y", loc + scale * torch.randn_like(loc)).mean for _ in range(3)
            ]
            images = torch.cat(rows)
    save_image(images, path, nrow=8, padding=1, pad_value=0.5)


def run(args, name: str, classifier, clf_acc: dict) -> dict:
    y_kind = "label" if name.endswith("label") else "image"
    train = load_pair(name, "train", "dynamic")
    test = load_pair(name, "test", "static", seed=EVAL_SEED)
    idx = torch.arange(args.n_eval)
    batch, labels = test.take(idx), test.sources["x"].labels[idx]
    sub = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: args.n_train]
    train = MultimodalDataset({k: subset(s, sub) for k, s in train.sources.items()})
    result = {"data set": name, "classifier test accuracy": clf_acc, "runs": {}}
    net = {"z_dim": args.z_dim, "hidden": tuple(args.hidden), "label_hidden": tuple(args.label_hidden)}
    net["activation"] = args.activation
    weighted = args.y_weight != 1.0
    mvae_name = f"mvae (lambda_y={args.y_weight:g})" if weighted else "mvae"
    mvae_objective = build_objective(
        "multimodal_elbo", likelihood_weights=(1.0, args.y_weight) if weighted else ()
    )
    todo = [(mvae_name, mvae_objective)] if "mvae" in args.runs else []
    todo += [("joint", build_objective("elbo"))] if "joint" in args.runs else []
    for run_name, objective in todo:
        torch.manual_seed(args.seed)
        model = build_model("mvae", y_kind=y_kind, **net)
        guide = model.default_guide()
        t0 = time.perf_counter()
        fit(
            model,
            guide,
            train,
            objective,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=False,
        )
        seconds = time.perf_counter() - t0
        torch.manual_seed(args.seed + 1)
        metrics = mvae_metrics(model, guide, batch, labels, args.k, classifier, y_kind)
        result["runs"][run_name] = {"train seconds": seconds, **metrics}
        print(name, run_name, json.dumps(result["runs"][run_name]), flush=True)
        if run_name == mvae_name:
            figure(model, guide, batch, y_kind, Path(args.out) / f"{name}{args.suffix}.png")
    if "vae" not in args.runs:
        return result
    torch.manual_seed(args.seed)
    vae = build_model("vae", z_dim=args.z_dim, hidden=tuple(args.hidden), activation=args.activation)
    guide = vae.default_guide()
    images = load("fashion-mnist" if name.startswith("fashion") else "mnist", "train", "dynamic")
    t0 = time.perf_counter()
    fit(
        vae,
        guide,
        subset(images, sub),
        build_objective("elbo"),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    torch.manual_seed(args.seed + 1)
    lp = log_likelihood(vae, guide, batch.values["x"], k=args.k)
    key = f"vae (x only, {args.activation})"
    result["runs"][key] = {"train seconds": seconds, "log p(x)": [lp.mean, lp.stderr]}
    print(name, key, json.dumps(result["runs"][key]), flush=True)
    return result


def subset(source, index: torch.Tensor):
    """Rows ``index`` of an ImageData (keeping its binarization) or of a tensor."""
    if isinstance(source, ImageData):
        return ImageData(source.images[index], source.labels[index], source.binarize)
    return source[index]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["mnist-label", "fashion-mnist-label", "mnist-flip"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-train", type=int, default=20000, help="training pairs (a fixed random subset)")
    p.add_argument("--n-eval", type=int, default=500, help="first test pairs evaluated")
    p.add_argument("--k", type=int, default=500, help="importance samples per datapoint")
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--label-hidden", type=int, nargs="+", default=[256])
    p.add_argument("--activation", default="elu", help="of every network (MVAE and VAE alike)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--classifier-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/multimodal")
    p.add_argument("--runs", nargs="+", choices=["mvae", "joint", "vae"], default=["mvae", "joint", "vae"])
    p.add_argument(
        "--y-weight", type=float, default=1.0, help="the MVAE's training weight on log p(y) (lambda)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = p.parse_args()
    args.suffix = f"-lambda{args.y_weight:g}" if args.y_weight != 1.0 else ""
    if args.smoke:
        args.epochs, args.n_train, args.n_eval, args.k, args.z_dim = 1, 64, 16, 4, 4
        args.hidden, args.label_hidden, args.batch_size = [8], [8], 32
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"threads {torch.get_num_threads()}, args {vars(args)}", flush=True)
    classifiers = {}
    for name in args.datasets:
        source = "fashion-mnist" if name.startswith("fashion") else "mnist"
        if source not in classifiers and set(args.runs) != {"vae"}:
            t0 = time.perf_counter()
            classifiers[source] = train_classifier(source, args.classifier_epochs, args.seed)
            print(
                f"classifier {source}: test accuracy {classifiers[source][1]} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        clf, acc = classifiers.get(source, (None, None))
        if clf is not None:
            clf.eval()
        result = run(args, name, clf, acc)
        result["args"] = vars(args)
        path = Path(args.out) / f"{name}{args.suffix}.json"
        if path.exists():  # a rerun of some runs keeps the others' results (and their args)
            old = json.loads(path.read_text())
            old["runs"].update(result["runs"])
            old.setdefault("rerun args", []).append(vars(args))
            result = {**old, "classifier test accuracy": acc or old["classifier test accuracy"]}
        path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
