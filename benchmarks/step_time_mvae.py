"""Training-step time of the multimodal VAE: vaezoo's sub-sampled objective against a hand-written step.

The model is the MVAE on image + label (784-256-256-32 experts and decoders, ELU; a 10-256-32 label
expert and 32-256-10 label decoder), the guide the product of experts, the objective
ELBO(x, y) + ELBO(x) + ELBO(y) (``multimodal_elbo``), single sample, analytic KL, fused Adam. The
hand-written PyTorch step uses deep copies of the same networks and computes the same three ELBOs
with no Pyro. Before timing, the script checks that both losses agree on the same weights and
noise. Timings alternate between the two in rounds, so drifts in machine load hit both alike. Data:
fixed random binary images and labels, every datapoint complete.

    OMP_NUM_THREADS=1 python benchmarks/step_time_mvae.py
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

from vaezoo import build_model, build_objective
from vaezoo.inference.fit import parameters
from vaezoo.multimodal import MultimodalBatch


class HandWrittenMVAE(nn.Module):
    """The reference: the same expert and decoder modules, the three ELBOs written out by hand."""

    def __init__(self, model, guide):
        super().__init__()
        self.trunks, self.heads = copy.deepcopy(guide.trunks), copy.deepcopy(guide.heads)
        self.decoders = copy.deepcopy(model.decoders)
        self.min_scale = guide.config.min_scale

    def expert(self, name, h):
        loc, raw = self.heads[name](self.trunks[name](h)).chunk(2, -1)
        return loc, (F.softplus(raw) + self.min_scale).pow(-2)

    def elbo(self, experts, x, y, use_x, use_y):
        precision = 1.0 + sum(p for _, p in experts)
        loc = sum(m * p for m, p in experts) / precision
        scale = precision.rsqrt()
        z = loc + scale * torch.randn_like(loc)
        total = -(0.5 * (loc.pow(2) + scale.pow(2) - 1) - scale.log()).sum(-1)
        if use_x:
            logits = self.decoders["x"](z)
            total = total - F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        if use_y:
            total = total - F.cross_entropy(self.decoders["y"](z), y, reduction="none")
        return total

    def loss(self, batch: MultimodalBatch) -> torch.Tensor:
        x, y = batch.values["x"].flatten(1), batch.values["y"]
        ex = self.expert("x", x)
        ey = self.expert("y", F.one_hot(y, self.decoders["y"][-1].out_features).to(x.dtype))
        total = self.elbo([ex, ey], x, y, True, True) + self.elbo([ex], x, y, True, False)
        return -(total + self.elbo([ey], x, y, False, True)).mean()


def check_agreement(model, guide, reference, objective, batch) -> float:
    """|vaezoo loss - hand-written loss| on the same weights and noise (same draws in the same order)."""
    torch.manual_seed(5)
    a = objective.differentiable_loss(model, guide, batch).item()
    torch.manual_seed(5)
    b = reference.loss(batch).item()
    if abs(a - b) > 1e-4 * abs(b):
        raise SystemExit(f"the two steps compute different losses: vaezoo {a}, hand-written {b}")
    return abs(a - b)


def measure(batch_size: int, steps: int, rounds: int, net: dict) -> tuple[dict[str, float], float]:
    torch.manual_seed(0)
    model = build_model("mvae", **net)
    guide = model.default_guide()
    reference = HandWrittenMVAE(model, guide)
    objective = build_objective("multimodal_elbo")
    g = torch.Generator().manual_seed(1)
    batches = [
        MultimodalBatch(
            {"x": torch.bernoulli(torch.rand(batch_size, 1, 28, 28, generator=g)),
             "y": torch.randint(10, (batch_size,), generator=g)}
        )
        for _ in range(steps)
    ]  # fmt: skip
    diff = check_agreement(model, guide, reference, objective, batches[0])


    steps_by_name = {
        "vaezoo multimodal_elbo (Pyro)": training_step(
            lambda b: objective.differentiable_loss(model, guide, b), parameters(model, guide)
        ),
        "hand-written PyTorch": training_step(reference.loss, reference.parameters()),
    }
    warm_up(steps_by_name, batches[:3])
    return alternating_medians(steps_by_name, batches, rounds), diff


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=7, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    net = {"z_dim": 32, "hidden": (256, 256), "label_hidden": (256,)}
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes = 3, 2, [8]
        net = {"z_dim": 4, "hidden": (8,), "label_hidden": (8,)}
    pyro.enable_validation(args.validate)
    print(
        f"ran: MVAE image+label {net}, PoE guide, multimodal_elbo (3 ELBOs, 1 sample, analytic KL), "
        f"{args.steps} steps x {args.rounds} alternating rounds per batch size, fused Adam lr 1e-3, "
        f"validation {'on' if args.validate else 'off'}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), pyro {pyro.__version__}, {platform.machine()}"
    )
    reference = "hand-written PyTorch"
    for batch_size in args.batch_sizes:
        medians, diff = measure(batch_size, args.steps, args.rounds, net)
        print(f"batch {batch_size}: losses agree to {diff:.2e}")
        for name, seconds in medians.items():
            ratio = seconds / medians[reference]
            print(f"  {name:32s} median {1e3 * seconds:7.3f} ms/step  ratio to PyTorch {ratio:.3f}")


if __name__ == "__main__":
    main()
