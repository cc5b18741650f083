"""Training-step time: vaezoo's Pyro VAE step against a hand-written PyTorch step of the same networks.

Both steps use the same weights at the start, the same batches, batch size and Adam settings; the
hand-written step computes the same single-sample ELBO (analytic KL, Bernoulli likelihood) with no
Pyro. Timings alternate between the two in rounds, so drifts in machine load hit both alike. The
data are fixed random binary images (a data loader is not part of a step).

    python benchmarks/step_time.py                 # validation off, batch 100
    python benchmarks/step_time.py --validate      # with Pyro's distribution checks
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo import ELBO, VAE
from vaezoo.inference.fit import make_optimizer, parameters


class HandWrittenVAE(nn.Module):
    """The reference: the same encoder, head and decoder modules, with the ELBO written out by hand."""

    def __init__(self, model: VAE, guide):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(guide.encoder), copy.deepcopy(guide.head)
        self.decoder = copy.deepcopy(model.decoder)
        self.min_scale = guide.config.min_scale

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, raw = self.head(self.encoder(x.flatten(1))).chunk(2, dim=-1)
        scale = F.softplus(raw) + self.min_scale
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        return -(log_px - kl).mean()


def time_steps(step, batches) -> float:
    t0 = time.perf_counter()
    for x in batches:
        step(x)
    return (time.perf_counter() - t0) / len(batches)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=7, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds = 3, 2
    pyro.enable_validation(args.validate)
    torch.manual_seed(0)

    model = VAE()  # Burda et al. one-layer architecture: 784-200-200-50, tanh
    guide = model.default_guide()
    reference = HandWrittenVAE(model, guide)
    objective = ELBO()
    opt_pyro = make_optimizer(parameters(model, guide), lr=1e-3)
    opt_ref = make_optimizer(list(reference.parameters()), lr=1e-3)
    data = torch.bernoulli(
        torch.rand(args.steps, args.batch_size, *model.x_shape, generator=torch.Generator().manual_seed(1))
    )
    batches = list(data)

    def pyro_step(x):
        loss = objective.differentiable_loss(model, guide, x)
        opt_pyro.zero_grad(set_to_none=True)
        loss.backward()
        opt_pyro.step()

    def ref_step(x):
        loss = reference.loss(x)
        opt_ref.zero_grad(set_to_none=True)
        loss.backward()
        opt_ref.step()

    for step in (pyro_step, ref_step):  # warm-up: allocator, kernels, Adam state
        time_steps(step, batches[:3])
    t_pyro, t_ref = [], []
    for _ in range(args.rounds):
        t_pyro.append(time_steps(pyro_step, batches))
        t_ref.append(time_steps(ref_step, batches))
    med_pyro, med_ref = statistics.median(t_pyro), statistics.median(t_ref)
    print(
        f"ran: VAE 784-200-200-50 tanh + mirrored encoder, batch {args.batch_size}, {args.steps} steps x "
        f"{args.rounds} alternating rounds, fused Adam lr 1e-3 (both), "
        f"validation {'on' if args.validate else 'off'}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"vaezoo (Pyro) step: median {1e3 * med_pyro:.3f} ms")
    print(f"hand-written PyTorch step: median {1e3 * med_ref:.3f} ms")
    print(f"ratio Pyro / PyTorch: {med_pyro / med_ref:.3f}")


if __name__ == "__main__":
    main()
