"""Training-step time: vaezoo's Pyro VAE step against a hand-written PyTorch step of the same networks.

Both steps use the same weights at the start, the same batches, batch size and Adam settings; the
hand-written step computes the same single-sample ELBO (analytic KL, Bernoulli likelihood) with no
Pyro. Timings alternate between the two in rounds, so drifts in machine load hit both alike. The
data are fixed random binary images (a data loader is not part of a step).

    python benchmarks/step_time.py                       # validation off, batch sizes 20, 100, 500
    python benchmarks/step_time.py --validate            # with Pyro's distribution checks
    python benchmarks/step_time.py --backend fx          # vaezoo's traced graph without inductor

Four steps, in one run: vaezoo eager (``ELBO().differentiable_loss`` and ``backward``), vaezoo
compiled (:class:`~vaezoo.inference.compiled.CompiledLoss`: the loss and gradients traced once per
batch shape and compiled by inductor), hand-written eager, and hand-written compiled
(``torch.compile`` of the hand-written loss; its backward is compiled too, by AOTAutograd). Ratios
are to the hand-written eager and the hand-written compiled step. Compilation happens in the
warm-up steps, outside the timed blocks. Pyro's own :class:`~pyro.infer.TraceMeanField_ELBO` on the
same model and guide is timed as well, to separate what Pyro's effect handling costs from what
vaezoo's objective adds. ``--smoke`` traces vaezoo's graph without inductor (``--backend fx``) and
skips ``torch.compile``, so that the test suite does not pay for compilation.
"""

from __future__ import annotations

import argparse
import copy
import platform

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import TraceMeanField_ELBO
from timing import alternating_medians, training_step, warm_up
from torch import nn

from vaezoo import ELBO, VAE
from vaezoo.inference.compiled import CompiledLoss
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


EAGER, COMPILED = "vaezoo ELBO (Pyro model/guide)", "vaezoo compiled (CompiledLoss)"
HAND, HAND_COMPILED = "hand-written PyTorch", "hand-written torch.compile"


def measure(batch_size: int, steps: int, rounds: int, backend: str, hand_compiled: bool) -> dict[str, float]:
    """Median seconds per training step of each implementation, timed in alternating blocks."""
    torch.manual_seed(0)
    model = VAE()  # Burda et al. one-layer architecture: 784-200-200-50, tanh
    guide = model.default_guide()
    reference = HandWrittenVAE(model, guide)
    pyro_guide = copy.deepcopy(guide)
    pyro_model = copy.deepcopy(model)
    objective, pyro_elbo = ELBO(), TraceMeanField_ELBO()
    generator = torch.Generator().manual_seed(1)
    batches = list(torch.bernoulli(torch.rand(steps, batch_size, *model.x_shape, generator=generator)))

    compiled_model, compiled_guide = copy.deepcopy((model, guide))  # together: a guide may hold its model
    compiled_reference = copy.deepcopy(reference)
    fast = CompiledLoss(objective, backend=backend)


    compiled_optimizer = make_optimizer(parameters(compiled_model, compiled_guide), lr=1e-3)

    def compiled_step(x):  # the hook fit would use: gradients set by the graph, then the same Adam
        compiled_optimizer.zero_grad(set_to_none=True)
        loss = fast.loss_and_grad(compiled_model, compiled_guide, x)
        compiled_optimizer.step()
        return loss.item()

    steps_by_name = {
        EAGER: training_step(
            lambda x: objective.differentiable_loss(model, guide, x), parameters(model, guide)
        ),
        COMPILED: compiled_step,
        HAND: training_step(reference.loss, reference.parameters()),
        "Pyro TraceMeanField_ELBO": training_step(
            lambda x: pyro_elbo.differentiable_loss(pyro_model, pyro_guide, x) / x.shape[0],
            parameters(pyro_model, pyro_guide),
        ),
    }
    if hand_compiled:
        steps_by_name[HAND_COMPILED] = training_step(
            torch.compile(compiled_reference.loss), compiled_reference.parameters()
        )
    warm_up(steps_by_name, batches[:3])
    if fast.eager_reason(compiled_model, compiled_guide, batches[0]) is not None:
        raise SystemExit("CompiledLoss fell back to eager: the compiled row would time the eager step")
    return alternating_medians(steps_by_name, batches, rounds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=7, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--backend", choices=["inductor", "fx"], default="inductor",
                        help="how CompiledLoss runs its traced graph")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite (no inductor)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes, args.backend = 3, 2, [8], "fx"
    pyro.enable_validation(args.validate)
    print(
        f"ran: VAE 784-200-200-50 tanh + mirrored encoder, single-sample ELBO with analytic KL, "
        f"{args.steps} steps x {args.rounds} alternating rounds per batch size, fused Adam lr 1e-3 (all), "
        f"validation {'on' if args.validate else 'off'}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), pyro {pyro.__version__}, {platform.machine()}; "
        f"CompiledLoss backend {args.backend}"
    )
    for batch_size in args.batch_sizes:
        medians = measure(batch_size, args.steps, args.rounds, args.backend, hand_compiled=not args.smoke)
        print(f"batch {batch_size}:")
        for name, seconds in medians.items():
            versus = f"  ratio to hand-written eager {seconds / medians[HAND]:.3f}"
            if HAND_COMPILED in medians:
                versus += f", compiled {seconds / medians[HAND_COMPILED]:.3f}"
            print(f"  {name:32s} median {1e3 * seconds:7.3f} ms/step{versus}")
        best = min(medians[EAGER], medians[COMPILED])
        summary = f"  vaezoo best: ratio to hand-written eager {best / medians[HAND]:.3f}"
        if HAND_COMPILED in medians:
            summary += f", compiled {best / medians[HAND_COMPILED]:.3f}"
        print(summary)


if __name__ == "__main__":
    main()
