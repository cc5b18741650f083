"""Training-step time: vaezoo's Pyro Ladder VAE step against a hand-written PyTorch step of the same networks.

Both steps start from the same weights (deep copies of the Ladder VAE's bottom-up, top-down and
decoder networks, batch norm included), use the same batches, batch size and Adam settings, and
compute the same single-sample ELBO: Bernoulli likelihood and closed-form KL per layer between the
precision-weighted posterior and the top-down prior. The hand-written step runs the top-down
networks once and reuses them for the KL; the Pyro step runs them in the guide and again when the
model is replayed, as any model/guide pair must. Timings alternate between the two in rounds, so
drifts in machine load hit both alike. The data are fixed random binary images.

    python benchmarks/step_time_hier.py               # paper MNIST LVAE 64-32-16-8-4, batch 100
    python benchmarks/step_time_hier.py --validate    # with Pyro's distribution checks
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
from torch.distributions import Normal, kl_divergence

from vaezoo import ELBO
from vaezoo.guides.ladder import precision_weighted
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.models.hvae import normal_head
from vaezoo.models.ladder import LadderVAE


class HandWrittenLVAE(nn.Module):
    """The reference: copies of the same modules, with the Ladder VAE's ELBO written out by hand."""

    def __init__(self, model: LadderVAE, guide):
        super().__init__()
        self.bottom_up, self.heads = copy.deepcopy(guide.bottom_up), copy.deepcopy(guide.heads)
        self.top_down, self.decoder = copy.deepcopy(model.top_down), copy.deepcopy(model.decoder)
        self.q_min, self.p_min = guide.config.min_scale, model.config.min_scale

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        d, estimates = x.flatten(1), []
        for net, head in zip(self.bottom_up, self.heads, strict=True):
            d = net(d)
            estimates.append(normal_head(head(d), self.q_min))
        top = len(estimates) - 1
        kl = x.new_zeros(x.shape[0])
        z = None
        for j in reversed(range(top + 1)):
            loc, scale = estimates[j]
            if j == top:
                prior = Normal(torch.zeros_like(loc), torch.ones_like(scale))
            else:
                prior = Normal(*normal_head(self.top_down[j](z), self.p_min))
                loc, scale = precision_weighted(loc, scale, prior.loc, prior.scale)
            q = Normal(loc, scale)
            z = q.rsample()
            kl = kl + kl_divergence(q, prior).sum(-1)
        logits = self.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(-1)
        return -(log_px - kl).mean()


def time_steps(step, batches) -> float:
    t0 = time.perf_counter()
    for x in batches:
        step(x)
    return (time.perf_counter() - t0) / len(batches)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_size = 2, 1, 16
    pyro.enable_validation(args.validate)
    torch.manual_seed(0)

    model = LadderVAE()  # Sønderby et al. MNIST: 64-32-16-8-4 latents, 512-...-32 units, batch norm
    guide = model.default_guide()
    reference = HandWrittenLVAE(model, guide)
    objective = ELBO()
    data = torch.bernoulli(
        torch.rand(args.steps, args.batch_size, *model.x_shape, generator=torch.Generator().manual_seed(1))
    )
    batches = list(data)

    # Same weights and random numbers: the two losses must agree before any step (train-mode batch norm).
    torch.manual_seed(2)
    pyro_loss = objective.loss(model, guide, batches[0])
    torch.manual_seed(2)
    with torch.no_grad():
        ref_loss = reference.loss(batches[0]).item()

    opt_pyro = make_optimizer(parameters(model, guide), lr=1e-3)
    opt_ref = make_optimizer(list(reference.parameters()), lr=1e-3)

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
        time_steps(step, batches[:2])
    t_pyro, t_ref = [], []
    for _ in range(args.rounds):
        t_pyro.append(time_steps(pyro_step, batches))
        t_ref.append(time_steps(ref_step, batches))
    med_pyro, med_ref = statistics.median(t_pyro), statistics.median(t_ref)
    print(
        f"ran: Ladder VAE 784 -> z 64-32-16-8-4, MLPs 512-256-128-64-32 (2 layers each, batch norm, "
        f"leaky ReLU), ladder guide; batch {args.batch_size}, {args.steps} steps x {args.rounds} "
        f"alternating rounds, fused Adam lr 1e-3 (both), validation {'on' if args.validate else 'off'}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"same loss on the same weights and noise: Pyro {pyro_loss:.4f}, hand-written {ref_loss:.4f}")
    print(f"vaezoo (Pyro) step: median {1e3 * med_pyro:.3f} ms")
    print(f"hand-written PyTorch step: median {1e3 * med_ref:.3f} ms")
    print(f"ratio Pyro / PyTorch: {med_pyro / med_ref:.3f}")


if __name__ == "__main__":
    main()
