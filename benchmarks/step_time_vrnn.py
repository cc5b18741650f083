"""Training-step time of the VRNN: vaezoo's Pyro model/guide step against a hand-written PyTorch step.

Both steps start from the same weights and use the same batches, batch size and Adam settings; the
hand-written step computes the same single-sample ELBO (analytic KL per step, Bernoulli emissions)
with the same modules (the model's phi_x, phi_z, prior, decoder and GRU cell and the guide's
encoder) and no Pyro, running the recurrence once. vaezoo's model, replayed on the guide's draws,
takes the recurrent states the guide computed (:class:`~vaezoo.models.prior_handoff.PriorHandoff`),
so it runs the recurrence once too. Timings alternate between the two in rounds, so drifts in
machine load hit both alike.

    python benchmarks/step_time_vrnn.py         # MNIST-rows shapes (T = 28, D = 28), batch 32 and 128
"""

from __future__ import annotations

import argparse
import copy
import platform

import pyro
import torch
import torch.nn.functional as F
from timing import alternating_medians, training_step, warm_up
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaezoo import ELBO
from vaezoo.inference.fit import parameters
from vaezoo.models import VRNN
from vaezoo.nets import normal_head


class HandWrittenVRNN(nn.Module):
    """The reference: copies of the same modules, the ELBO over time written out by hand."""

    def __init__(self, model: VRNN, guide):
        super().__init__()
        for name in ("phi_x", "phi_z", "prior_net", "decoder", "cell"):
            setattr(self, name, copy.deepcopy(getattr(model, name)))
        self.encoder = copy.deepcopy(guide.encoder)
        self.h_dim, self.min_scale = model.config.h_dim, model.config.min_scale

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.h_dim)
        elbo = x.new_zeros(x.shape[0])
        for t in range(x.shape[1]):
            feature = self.phi_x(x[:, t])
            q = Normal(*normal_head(self.encoder(torch.cat([feature, h], -1)), self.min_scale))
            p = Normal(*normal_head(self.prior_net(h), self.min_scale))
            z = q.rsample()
            fz = self.phi_z(z)
            logits = self.decoder(torch.cat([fz, h], -1))
            log_px = -F.binary_cross_entropy_with_logits(logits, x[:, t], reduction="none").sum(-1)
            elbo = elbo + log_px - kl_divergence(q, p).sum(-1)
            h = self.cell(torch.cat([feature, fz], -1), h)
        return -elbo.mean()


def measure(batch_size: int, steps: int, rounds: int, shape: tuple[int, int]) -> dict[str, float]:
    """Median seconds per training step of each implementation, timed in alternating blocks."""
    torch.manual_seed(0)
    model = VRNN(x_shape=shape, z_dim=16, h_dim=128, feature=64, hidden=(128,))
    guide = model.default_guide()
    reference = HandWrittenVRNN(model, guide)
    objective = ELBO()
    generator = torch.Generator().manual_seed(1)
    batches = list(torch.bernoulli(torch.full((steps, batch_size, *shape), 0.3), generator=generator))


    steps_by_name = {
        "vaezoo ELBO (Pyro model/guide)": training_step(
            lambda x: objective.differentiable_loss(model, guide, x), parameters(model, guide)
        ),
        "hand-written PyTorch": training_step(reference.loss, reference.parameters()),
    }
    warm_up(steps_by_name, batches[:2])
    return alternating_medians(steps_by_name, batches, rounds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
    parser.add_argument("--shape", type=int, nargs=2, default=[28, 28], help="time steps, features")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes, args.shape = 2, 1, [4], [5, 6]
    pyro.enable_validation(args.validate)
    print(
        f"ran: VRNN z=16 h=128 (GRU) features=64 hidden=128, T={args.shape[0]} D={args.shape[1]}, "
        f"single-sample ELBO with analytic KL, {args.steps} steps x {args.rounds} alternating rounds "
        f"per batch size, fused Adam lr 1e-3 (both), validation {'on' if args.validate else 'off'}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.machine()}"
    )
    reference = "hand-written PyTorch"
    for batch_size in args.batch_sizes:
        medians = measure(batch_size, args.steps, args.rounds, tuple(args.shape))
        print(f"batch {batch_size}:")
        for name, seconds in medians.items():
            ratio = seconds / medians[reference]
            print(f"  {name:32s} median {1e3 * seconds:8.2f} ms/step  ratio to PyTorch {ratio:.3f}")


if __name__ == "__main__":
    main()
