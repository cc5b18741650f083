"""Score pythae's VQVAE with vaezoo: weights ported into vaezoo's ``vqvae`` and ``vq`` guide, same metrics.

Reads the file ``train_vqvae.py`` wrote. pythae's encoder, decoder and codebook have the layers of
vaezoo's ``vqvae`` model and ``vq`` guide, so they load by name (the decoder's sigmoid becomes the
Bernoulli likelihood's logits; pythae's ``quantizer.embeddings.weight`` becomes ``codebook.vectors``).

**Port check.** On the 100 test images pythae scored, vaezoo must assign the same codes and give the same
reconstruction loss (-log p(x | z_q), or the summed squared error for ``--reconstruction mse``) and the
same VQ losses (vaezoo's ``vq`` penalty, divided by D h w when pythae averaged them) as pythae's own
loss; the script stops if they differ by more than float32 rounding (relative 1e-4). pythae computes
its cross-entropy from probabilities with log clamped at -100, vaezoo from logits; they agree unless a
pixel is predicted wrong with probability within float32 rounding of 1.

Then, on the 10k test images binarized with ``vaezoo.cli.EVAL_SEED``, the metrics of
``experiments/vqvae.py``: per-pixel MSE of E[x | z_q], -log p(x | z_q), codes in use and perplexity, and
the bound -log p(x | z_q) + hw log K under the uniform prior (pythae has no stage 2), into
``docs/vqvae/peer-pythae-K<K>.json``, which ``experiments/vqvae.py report`` shows::

    OMP_NUM_THREADS=1 VAEZOO_DATA=../shared/data python benchmarks/peers/pythae/evaluate_vqvae.py \\
        --weights /tmp/pythae_peer/vqvae-K16.pt
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shlex
import sys
from pathlib import Path

import torch

from vaezoo import build_model, data
from vaezoo.cli import EVAL_SEED
from vaezoo.inference import VQ, code_maps, mean_bound
from vaezoo.nets import evaluating

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("vqvae_experiment", ROOT / "experiments" / "vqvae.py")
vqvae = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vqvae)


def port(saved: dict):
    """vaezoo's ``vqvae`` and ``vq`` guide holding pythae's trained weights (eval mode)."""
    c = saved["config"]
    model = build_model("vqvae", codebook_size=c["codebook_size"], code_dim=c["code_dim"],
                        downsample=c["downsample"], channels=c["channels"], dead_after=0,
                        init_from_data=False)
    guide = model.default_guide()
    state = saved["state"]
    model.decoder.load_state_dict(state["decoder"])  # both hold their layers as ``net``, index for index
    guide.encoder.load_state_dict(state["encoder"])
    with torch.no_grad():
        model.codebook.vectors.copy_(state["codebook"])
    return model.eval(), guide.eval()


@torch.no_grad()
def port_check(model, guide, saved: dict) -> dict:
    """vaezoo's losses and codes on pythae's check batch, beside pythae's own; raises if they differ."""
    c, check = saved["config"], saved["port_check"]
    x = check["x"].float()
    with evaluating(model, guide):
        q = guide.quantize(x)
        px = model.x_dist(q.z_q)
        recon = -px.log_prob(x) if c["reconstruction"] == "bce" else (px.mean - x).pow(2).sum((-3, -2, -1))
        penalty = VQ(commitment=c["commitment"]).terms(model, guide, x)[1]
    per_map = 1.0 if c["vq_loss"] == "sum" else math.prod(model.code_shape)
    ours = {"recon": recon.mean().item(), "vq": penalty.mean().item() / per_map}
    out = {"codes_equal": bool(torch.equal(q.codes, check["codes"])),
           "vaezoo_recon": ours["recon"], "pythae_recon": check["pythae_recon"],
           "vaezoo_vq": ours["vq"], "pythae_vq": check["pythae_vq"]}
    close = all(abs(ours[k] - check[f"pythae_{k}"]) <= 1e-4 * abs(check[f"pythae_{k}"]) for k in ours)
    if not (close and out["codes_equal"]):
        raise SystemExit(f"port check failed (codes or losses differ): {json.dumps(out)}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="the file train_vqvae.py wrote")
    p.add_argument("--docs", default=str(ROOT / "docs" / "vqvae"))
    p.add_argument("--test-size", type=int, default=None, help="first N test images (default: all 10k)")
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    saved = torch.load(args.weights, weights_only=False)
    c = saved["config"]
    model, guide = port(saved)
    check = port_check(model, guide, saved)
    print(f"port check (100 test images): {json.dumps(check)}", flush=True)
    test = vqvae.subset(data.load("mnist", "test", "static", seed=EVAL_SEED), args.test_size)
    if not torch.equal(test.fixed[:100].to(torch.uint8), saved["port_check"]["x"]):
        raise SystemExit("the check batch is not vaezoo's test binarization: rerun export_mnist.py")
    recon = vqvae.reconstruction(model, guide, test)
    hw = math.prod(model.map_shape)
    seconds = saved["seconds_per_epoch"]
    result = {
        "peer": f"pythae {saved['pythae_model']}",
        "label": f"pythae `VQVAE`, {c['reconstruction'].upper()} reconstruction, VQ losses "
                 + ("summed per map (as vaezoo)" if c["vq_loss"] == "sum" else "averaged (pythae's scale)"),
        "codebook_size": c["codebook_size"],
        "code_map": list(model.map_shape),
        "config": {k: v for k, v in c.items() if k != "pythae_model_config"},
        "pythae_model_config": c["pythae_model_config"],
        "train_images": saved["train_images"],
        "test_images": len(test),
        "parameters": saved["parameters"],
        "seconds_per_epoch": seconds,
        "train_seconds": sum(seconds),
        "port_check": check,
        **recon,
        **vqvae.usage(model, code_maps(guide, test)),
        "uniform_kl": hw * math.log(c["codebook_size"]),
        "nll_bound_uniform": -mean_bound(model, guide, VQ(), test),
    }
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    variant = (c["reconstruction"], c["vq_loss"])
    tag = "" if variant == ("bce", "sum") else "-{}-{}".format(*variant)
    path = docs / f"peer-pythae-K{c['codebook_size']}{tag}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("pythae_model_config", "config")}))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
