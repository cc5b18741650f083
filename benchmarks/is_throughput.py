"""IS-5000 log-likelihood throughput: ``vaezoo.inference.log_likelihood`` against a hand-written sampler.

Both estimate log p(x) = log (1/k) sum_j p(x, z_j) / q(z_j | x), z_j ~ q(z | x), for the same VAE and
amortized encoder (the reference holds copies of the very same ``nn`` modules), with the same chunks
of particles (``c = max_elements // (batch * x_numel)`` at a time, merged by log-sum-exp in float64)
and the same batches. The reference is written directly in PyTorch: encoder once per batch, then per
chunk eps ~ N(0, I), z = mu + sigma eps, decoder, Bernoulli log-likelihood, closed-form Normal log
densities. No Pyro.

- Throughput: ``--rounds`` passes over the same ``--n`` test images, each batch timed for the two
  implementations back to back in alternating order; the median images per second of each (over
  the timed batches) is printed with their ratio (vaezoo time / reference time, target <= 1.10),
  the median of the per-batch paired ratios, and an extrapolation to the 10k test set (labelled).
- Peak memory: each implementation runs once more over one batch in its own child process
  (``multiprocessing`` "spawn", so nothing is inherited from this process). The child resets the
  kernel's high-water mark (``/proc/self/clear_refs``), runs, and reports ``VmHWM`` (peak resident
  set) and its growth over the resident set just before the run (imports and networks excluded).
- Agreement: on a few images, both are run from the same random seed with several chunks; since
  they draw the same normal variates in the same order, the estimates must agree to float rounding.

    OMP_NUM_THREADS=1 python benchmarks/is_throughput.py --checkpoint runs/cremer-mnist/checkpoint.pt
    OMP_NUM_THREADS=1 python benchmarks/is_throughput.py --smoke          # seconds, random data

Pyro's validation is off unless ``--validate`` (it checks x and every distribution's arguments).

References:
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR (the IS-k estimate).
    - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML (the
      architecture: 784-200-200-(2x50) encoder, 50-200-200-784 decoder, ELU).
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo import VAE, checkpoint, log_likelihood
from vaezoo.inference.importance import chunk_size

EVAL_SEED = 1234  # the project's fixed binarization of the test set (vaezoo/cli/base.py)
LOG_2PI = math.log(2 * math.pi)


class HandWrittenIS(nn.Module):
    """The reference importance sampler: the VAE's decoder and the guide's encoder and head, copied."""

    def __init__(self, model: VAE, guide):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(guide.encoder), copy.deepcopy(guide.head)
        self.decoder = copy.deepcopy(model.decoder)
        self.min_scale = guide.config.min_scale
        self.x_numel = model.x_numel

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, k: int, batch_size: int = 100, max_elements: int = 2**23):
        """Per-image log p̂(x), shape ``(n,)``, float64."""
        out = []
        for xb in x.split(batch_size):
            xf = xb.flatten(1)
            loc, raw = self.head(self.encoder(xf)).chunk(2, dim=-1)
            scale = F.softplus(raw) + self.min_scale
            c = chunk_size(k, xb.shape[0], self.x_numel, max_elements)
            lse = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64)
            done = 0
            while done < k:
                m = min(c, k - done)
                z = loc + torch.empty(m, *loc.shape).normal_() * scale
                log_q = (-((z - loc) ** 2) / (2 * scale**2) - scale.log() - 0.5 * LOG_2PI).sum(-1)
                log_pz = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
                logits = self.decoder(z)
                log_px = -F.binary_cross_entropy_with_logits(
                    logits, xf.expand_as(logits), reduction="none"
                ).sum(-1)
                lse = torch.logaddexp(lse, (log_px + log_pz - log_q).double().logsumexp(0))
                done += m
            out.append(lse - math.log(k))
        return torch.cat(out)


def build(spec: dict) -> tuple[VAE, nn.Module]:
    """Model and guide from a picklable spec (config and weights), in eval mode."""
    model = VAE(spec["model_config"])
    guide = model.default_guide()
    model.load_state_dict(spec["model_state"])
    guide.load_state_dict(spec["guide_state"])
    return model.eval(), guide.eval()


def make_spec(args) -> tuple[dict, torch.Tensor, str]:
    """Networks and test images: a checkpoint and the MNIST test set, or an untrained net and fake data."""
    if args.checkpoint:
        model, guide, _, payload = checkpoint.restore(args.checkpoint)
        cfg = payload.get("meta", {}).get("train_config", {})
        source = f"checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        model = VAE(z_dim=50, hidden=(200, 200), activation="elu")
        guide, cfg = model.default_guide(), {}
        source = "untrained VAE (Cremer et al. architecture)"
    if args.smoke or args.fake_data:
        g = torch.Generator().manual_seed(1)
        x = torch.bernoulli(torch.full((args.n, *model.x_shape), 0.2), generator=g)
        data_desc = f"{args.n} random binary images"
    else:
        from vaezoo import data

        dataset = cfg.get("dataset", "mnist")
        test = data.load(dataset, "test", "static", cfg.get("data_dir"), seed=EVAL_SEED)
        x = test[torch.arange(args.n)][0]
        data_desc = f"first {args.n} {dataset} test images (static binarization, seed {EVAL_SEED})"
    spec = {
        "model_config": model.config,
        "model_state": model.state_dict(),
        "guide_state": guide.state_dict(),
    }
    return spec, x, f"{source}; {data_desc}"


def run(name: str, model, guide, reference: HandWrittenIS, x: torch.Tensor, args) -> torch.Tensor:
    if name == "vaezoo":
        return log_likelihood(model, guide, x, k=args.k, batch_size=args.batch_size).per_datapoint
    return reference.log_likelihood(x, args.k, args.batch_size)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(name: str, spec: dict, x: torch.Tensor, args, queue) -> None:
    """Run one implementation once in a fresh process; report peak RSS and its growth, in MiB."""
    torch.set_num_threads(1)
    pyro.enable_validation(args.validate)
    model, guide = build(spec)
    reference = HandWrittenIS(model, guide)
    before = _status_kb("VmRSS")
    # Reset the high-water mark to the current RSS, so the peak is that of the run alone.
    Path("/proc/self/clear_refs").write_text("5")
    run(name, model, guide, reference, x, args)
    peak = _status_kb("VmHWM")
    queue.put((name, peak / 1024, (peak - before) / 1024))


def peak_memory(spec: dict, x: torch.Tensor, args) -> dict[str, tuple[float, float]]:
    ctx = multiprocessing.get_context("spawn")
    results = {}
    for name in ("vaezoo", "reference"):
        queue = ctx.Queue()
        child = ctx.Process(target=memory_child, args=(name, spec, x, args, queue))
        child.start()
        got = queue.get()
        child.join()
        results[got[0]] = got[1:]
    return results


def check_agreement(model, guide, reference: HandWrittenIS, x: torch.Tensor, k: int) -> float:
    """Both estimates from the same seed, several chunks per batch; the largest difference, nats."""
    max_elements = 4 * x.shape[0] * model.x_numel  # chunks of 4 particles: the merge path is exercised
    torch.manual_seed(7)
    ours = log_likelihood(model, guide, x, k=k, batch_size=len(x), max_elements=max_elements).per_datapoint
    torch.manual_seed(7)
    theirs = reference.log_likelihood(x, k, batch_size=len(x), max_elements=max_elements)
    diff = (ours - theirs).abs().max().item()
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-3), f"estimates differ by up to {diff:.2e} nats"
    return diff


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a VAE checkpoint (default: untrained network)")
    parser.add_argument("--n", type=int, default=200, help="test images timed per round")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed passes per implementation")
    parser.add_argument("--fake-data", action="store_true", help="random binary images instead of MNIST")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.k, args.batch_size, args.rounds = 20, 200, 10, 2
    pyro.enable_validation(args.validate)
    spec, x, source = make_spec(args)
    model, guide = build(spec)
    reference = HandWrittenIS(model, guide)
    print(
        f"ran: IS log-likelihood, k={args.k}, batch {args.batch_size}, {source}; "
        f"{args.rounds} rounds over {len(x)} images, each batch timed for both in alternating order; "
        f"validation {'on' if args.validate else 'off'}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
        f"pyro {pyro.__version__}, {platform.machine()}"
    )
    diff = check_agreement(model, guide, reference, x[: min(10, len(x))], k=50 if not args.smoke else 20)
    print(f"agreement: same seed, same chunks -> max |difference| {diff:.2e} nats (asserted <= 1e-3)")

    short = argparse.Namespace(**{**vars(args), "k": 20})
    for name in ("vaezoo", "reference"):  # warm-up: allocator and kernels
        run(name, model, guide, reference, x[: args.batch_size], short)
    # Timed per batch, the two implementations back to back in alternating order (ABBA...), so that
    # drifts in the load of a shared machine hit both alike; each pair also gives one paired ratio.
    seconds: dict[str, list[float]] = {"vaezoo": [], "reference": []}
    totals: dict[str, float] = {"vaezoo": 0.0, "reference": 0.0}
    batches = x.split(args.batch_size)
    order = ["vaezoo", "reference"]
    for _ in range(args.rounds):
        for xb in batches:
            for name in order:
                t0 = time.perf_counter()
                est = run(name, model, guide, reference, xb, args)
                seconds[name].append((time.perf_counter() - t0) / len(xb))
                totals[name] += est.sum().item()
            order.reverse()
    rate = {name: 1.0 / statistics.median(s) for name, s in seconds.items()}
    labels = {"vaezoo": "vaezoo log_likelihood", "reference": "hand-written PyTorch"}
    for name, r in rate.items():
        print(
            f"  {labels[name]:24s} median {r:8.2f} images/s  over {len(seconds[name])} timed batches "
            f"(extrapolated to the 10k test set: {10000 / r / 60:.1f} min)  "
            f"mean log p̂(x) {totals[name] / (args.rounds * len(x)):.3f}"
        )
    ratio = rate["reference"] / rate["vaezoo"]
    paired = sorted(a / b for a, b in zip(seconds["vaezoo"], seconds["reference"], strict=True))
    print(
        f"ratio (vaezoo time / hand-written time, medians): {ratio:.3f}  (target <= 1.10); "
        f"paired per-batch ratios: median {statistics.median(paired):.3f}, "
        f"range {paired[0]:.3f}-{paired[-1]:.3f}"
    )
    if not args.no_memory:
        mem = peak_memory(spec, x[: args.batch_size], args)
        for name, (peak, growth) in mem.items():
            print(f"  peak RSS {labels[name]:24s} {peak:8.1f} MiB  (growth during the run {growth:7.1f} MiB)")
        growth_ratio = mem["vaezoo"][1] / max(mem["reference"][1], 1e-9)
        print(f"memory ratio (peak growth, vaezoo / hand-written): {growth_ratio:.3f}")


if __name__ == "__main__":
    main()
