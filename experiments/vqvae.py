"""VQ-VAE on dynamically binarized MNIST at codebook sizes 16 / 64 / 256: reconstruction and the NLL bound.

``train``: for each codebook size K, stage 1 trains encoder, decoder and codebook with the ``vq``
objective under the uniform prior; stage 2 fits the PixelCNN prior to the training set's code maps
(``fit_code_prior``). On the 10k test images (binarized once, seed 1234) it measures the
reconstruction error of the decoder's mean E[x | z_q] (per pixel, against the binary image), the
reconstruction term -log p(x | z_q), the codes in use, and the bound
-log p(x) <= -log p(x | z_q) - log p(z_q) in nats per image with the uniform prior (stage 1) and with
the PixelCNN prior (stage 2). ``--reference`` also trains the ``vae`` model for the same number of
epochs in the same run and reports its test ELBO and IS NLL (k = ``--k``). Writes ``OUT/vqvae-K<K>.json``
(and ``OUT/vae-reference.json``); ``report`` turns them into ``OUT/results.md``, with a table of the
peers' ``OUT/peer-*.json`` (``benchmarks/peers/pythae/evaluate_vqvae.py``) when there are any.

    OMP_NUM_THREADS=1 python experiments/vqvae.py --out docs/vqvae train --sizes 16 64 256 --epochs 2 \
        --prior-epochs 2 --reference
    OMP_NUM_THREADS=1 python experiments/vqvae.py --out docs/vqvae report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from vaezoo import build_model, fit, log_likelihood
from vaezoo.data import ImageData, batches, load
from vaezoo.inference import ELBO, VQ, code_maps, code_nll, fit_code_prior, mean_bound
from vaezoo.nets import evaluating

EVAL_SEED = 1234


@torch.no_grad()
def reconstruction(model, guide, test) -> dict[str, float]:
    """Per-pixel MSE of E[x | z_q] against x, and the mean of -log p(x | z_q), over ``test``."""
    sq, nll, n = 0.0, 0.0, 0
    with evaluating(model, guide):
        for x in batches(test, 500):
            z_q = guide.quantize(x).z_q
            px = model.x_dist(z_q)
            sq += (px.mean - x).pow(2).sum().item()
            nll -= px.log_prob(x).sum().item()
            n += len(x)
    return {"mse_per_pixel": sq / (n * model.x_numel), "recon_nll": nll / n}


def usage(model, codes: torch.Tensor) -> dict[str, float]:
    """Codes in use on ``codes`` and the perplexity exp(H) of their frequencies."""
    freq = torch.bincount(codes.flatten(), minlength=model.config.codebook_size).double()
    p = freq / freq.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"codes_used": int((freq > 0).sum()), "perplexity": math.exp(entropy)}


def subset(data: ImageData, n: int | None) -> ImageData:
    if n is None or n >= len(data):
        return data
    out = ImageData(data.images[:n], data.labels[:n], data.binarize)
    if data.binarize == "static":
        out.fixed = data.fixed[:n]
    return out


def train_size(args, k: int, train, test) -> dict:
    torch.manual_seed(args.seed)
    model = build_model("vqvae", codebook_size=k, codebook_update=args.update)
    guide = model.default_guide()
    out = Path(args.out) / "runs" / f"K{k}"
    t0 = time.perf_counter()
    history = fit(model, guide, train, VQ(), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  seed=args.seed, out=out, progress=False)
    stage1 = time.perf_counter() - t0
    bound_uniform = mean_bound(model, guide, VQ(), test)
    recon = reconstruction(model, guide, test)
    test_codes = code_maps(guide, test)
    t0 = time.perf_counter()
    prior = fit_code_prior(model, guide, train, epochs=args.prior_epochs, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, test=test)
    stage2 = time.perf_counter() - t0
    bound_learned = mean_bound(model, guide, VQ(), test)
    torch.save({"model": model.state_dict(), "guide": guide.state_dict()}, out / "stage2.pt")
    hw = math.prod(model.map_shape)
    return {
        "codebook_size": k,
        "code_map": list(model.map_shape),
        "config": {"update": args.update, "epochs": args.epochs, "prior_epochs": args.prior_epochs,
                   "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                   "threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "stage1_seconds": stage1,
        "stage2_seconds": stage2,
        "history": history,
        "prior_history": prior,
        **recon,
        **usage(model, test_codes),
        "uniform_kl": hw * math.log(k),
        "test_code_nll": code_nll(model, test_codes),
        "nll_bound_uniform": -bound_uniform,
        "nll_bound_pixelcnn": -bound_learned,
    }


def reference(args, train, test) -> dict:
    torch.manual_seed(args.seed)
    vae = build_model("vae")
    guide = vae.default_guide()
    t0 = time.perf_counter()
    fit(vae, guide, train, ELBO(), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        progress=False)
    seconds = time.perf_counter() - t0
    torch.manual_seed(args.seed + 1)
    with evaluating(vae, guide):
        ll = log_likelihood(vae, guide, test, k=args.k)
    return {"model": "vae (Burda et al. architecture)", "epochs": args.epochs, "train_seconds": seconds,
            "neg_elbo": -mean_bound(vae, guide, ELBO(), test), "nll_is": -ll.mean,
            "nll_is_mc_stderr": ll.stderr, "k": args.k}


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_data = subset(load("mnist", "train", "dynamic"), args.n_train)
    test = subset(load("mnist", "test", "static", seed=EVAL_SEED), args.n_test)
    for k in args.sizes:
        result = train_size(args, k, train_data, test)
        (out / f"vqvae-K{k}.json").write_text(json.dumps(result, indent=1))
        shown = {key: v for key, v in result.items() if key not in ("history", "prior_history", "config")}
        print(json.dumps(shown), flush=True)
    if args.reference:
        result = reference(args, train_data, test)
        (out / "vae-reference.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)


def report(args) -> None:
    out = Path(args.out)
    runs = sorted((json.loads(p.read_text()) for p in out.glob("vqvae-K*.json")),
                  key=lambda r: r["codebook_size"])
    lines = ["# VQ-VAE on binarized MNIST", "",
             "Test set: 10k MNIST test images binarized once (seed 1234); nats per image. Bounds are upper "
             "bounds on -log p(x): -log p(x | z_q) - log p(z_q), exact for the deterministic posterior "
             "(no sampling).", "",
             "| K | code map | stage 1 epochs | codes used | perplexity | MSE / pixel | -log p(x given z_q) "
             "| KL = hw log K | bound, uniform prior | PixelCNN code NLL | **bound, PixelCNN prior** "
             "| train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        c = r["config"]
        lines.append(
            f"| {r['codebook_size']} | {'x'.join(map(str, r['code_map']))} | {c['epochs']} ({c['update']}) "
            f"+ prior {c['prior_epochs']} | {r['codes_used']} | {r['perplexity']:.1f} "
            f"| {r['mse_per_pixel']:.4f} "
            f"| {r['recon_nll']:.2f} | {r['uniform_kl']:.2f} | {r['nll_bound_uniform']:.2f} "
            f"| {r['test_code_nll']:.2f} | **{r['nll_bound_pixelcnn']:.2f}** "
            f"| {r['stage1_seconds'] + r['stage2_seconds']:.0f} |")
    ref = out / "vae-reference.json"
    if ref.is_file():
        v = json.loads(ref.read_text())
        lines += ["", f"Reference in the same run: `{v['model']}`, {v['epochs']} epochs "
                  f"({v['train_seconds']:.0f} s): "
                  f"-ELBO {v['neg_elbo']:.2f}, NLL by IS (k = {v['k']}) {v['nll_is']:.2f} "
                  f"± {v['nll_is_mc_stderr']:.3f} (MC s.e.)."]
        for r in runs:
            lines.append(f"- K = {r['codebook_size']}: VQ-VAE bound / VAE IS NLL = "
                         f"{r['nll_bound_pixelcnn'] / v['nll_is']:.3f}")
    lines += peer_rows(out, runs)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def peer_rows(out: Path, runs: list[dict]) -> list[str]:
    """A table of the peers' ``peer-*.json`` (benchmarks/peers/) beside vaezoo's stage 1 at the same K."""
    peers = sorted((json.loads(p.read_text()) for p in out.glob("peer-*.json")),
                   key=lambda r: (r["codebook_size"], r["label"]))
    if not peers:
        return []
    lines = ["", "## Peers (stage 1 only: no learned prior)", "",
             "Same networks, data, code map, K, commitment, epochs, batch and lr; trained by the peer's "
             "own code (`benchmarks/peers/`), scored by vaezoo on the ported weights after a port check "
             "(same codes and losses as the peer's own on 100 test images). Seconds come from separate "
             "runs on a shared machine: not a speed comparison.", "",
             "| K | implementation | epochs | codes used | perplexity | MSE / pixel | -log p(x given z_q) "
             "| bound, uniform prior | stage 1 s |",
             "|---|---|---|---|---|---|---|---|---|"]

    def row(r: dict, label: str, seconds: float) -> str:
        return (f"| {r['codebook_size']} | {label} | {r['config']['epochs']} | {r['codes_used']} "
                f"| {r['perplexity']:.1f} | {r['mse_per_pixel']:.4f} | {r['recon_nll']:.2f} "
                f"| {r['nll_bound_uniform']:.2f} | {seconds:.0f} |")

    ours = {r["codebook_size"]: r for r in runs}
    for r in peers:
        if r["codebook_size"] in ours:
            v = ours.pop(r["codebook_size"])
            lines.append(row(v, f"vaezoo `vqvae` + `vq` ({v['config']['update']})", v["stage1_seconds"]))
        lines.append(row(r, r["label"], r["train_seconds"]))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/vqvae")
    p.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--prior-epochs", type=int, default=2)
    t.add_argument("--update", choices=["loss", "ema"], default="loss")
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-train", type=int, default=None)
    t.add_argument("--n-test", type=int, default=None)
    t.add_argument("--reference", action="store_true", help="also train the vae for the same epochs")
    t.add_argument("--k", type=int, default=100, help="importance samples for the reference VAE's NLL")
    sub.add_parser("report")
    args = p.parse_args()
    if args.smoke and args.command == "train":
        args.sizes, args.epochs, args.prior_epochs, args.n_train, args.n_test = [16], 1, 1, 200, 100
        args.k = 5
    {"train": train, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
