"""Training-step time: vaezoo's ELBO step with a flow guide against a hand-written PyTorch step.

The model is the VAE of ``step_time.py`` (784-200-200-50 tanh, Bernoulli pixels); the guide a flow
guide with its defaults (IAF: a 784-200-200 tanh encoder giving mu, sigma and a context of 20, two
MADE steps of 100-100 ELU units in alternating orders, gated updates). The hand-written step
(flow_references.py) deep-copies the same networks and computes the same single-sample ELBO with
the Monte Carlo KL term log q - log p at the sample, as vaezoo's ELBO does for a flow guide: before
timing, the two losses are compared on the same weights and noise (a mismatch stops the run).
Both steps use the same batches, batch size and fused Adam; timings alternate between them in
rounds, so drifts in machine load hit both alike. The data are fixed random binary images.

    OMP_NUM_THREADS=1 python benchmarks/step_time_flows.py                  # IAF, batch 100 and 500
    python benchmarks/step_time_flows.py --guide iaf planar sylvester --batch-sizes 100

:class:`~vaezoo.inference.compiled.CompiledLoss` is timed too when it traces the pair (it reports
why not otherwise); ``--smoke`` is a tiny run for the test suite (``--backend fx``).
"""

from __future__ import annotations

import argparse
import copy
import platform

import pyro
import torch
from flow_references import REFERENCES
from timing import alternating_medians, training_step, warm_up

from vaezoo import ELBO, VAE
from vaezoo.inference.compiled import CompiledLoss
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.registry import build_guide

# Losses near 550 nats in float32 agree to ~1e-5 relative; other noise or another KL estimator
# moves the batch mean by nats.
REL_TOL = 1e-5
EAGER, COMPILED = "vaezoo ELBO (Pyro model/guide)", "vaezoo compiled (CompiledLoss)"
HAND = "hand-written PyTorch"


def same_loss(model, guide, reference, x: torch.Tensor) -> tuple[float, float]:
    """vaezoo's and the reference's loss on the same weights and noise (seed 2)."""
    torch.manual_seed(2)
    ours = ELBO().loss(model, guide, x)
    torch.manual_seed(2)
    with torch.no_grad():
        theirs = reference.loss(x).item()
    return ours, theirs


def measure(name: str, batch_size: int, args) -> dict:
    torch.manual_seed(0)
    model = VAE()
    guide = build_guide(name, model)
    reference = REFERENCES[name](model, guide)
    batches = list(torch.bernoulli(
        torch.rand(args.steps, batch_size, *model.x_shape, generator=torch.Generator().manual_seed(1))
    ))
    ours, theirs = same_loss(model, guide, reference, batches[0])
    agree = abs(ours - theirs) <= REL_TOL * abs(theirs)

    objective = ELBO()
    fast_model, fast_guide = copy.deepcopy((model, guide))
    fast = CompiledLoss(objective, backend=args.backend)
    opt_fast = make_optimizer(parameters(fast_model, fast_guide), lr=1e-3)

    def fast_step(x):
        opt_fast.zero_grad(set_to_none=True)
        loss = fast.loss_and_grad(fast_model, fast_guide, x)
        opt_fast.step()
        return loss.item()

    steps = {
        EAGER: training_step(
            lambda x: objective.differentiable_loss(model, guide, x), parameters(model, guide)
        ),
        HAND: training_step(reference.loss, reference.parameters()),
    }
    reason = fast.eager_reason(fast_model, fast_guide, batches[0])
    if reason is None:
        steps[COMPILED] = fast_step
    warm_up(steps, batches[:3])
    medians = alternating_medians(steps, batches, args.rounds)
    return {"guide": name, "batch": batch_size, "medians": medians, "agree": agree, "losses": (ours, theirs),
            "compiled": reason, "describe": describe(guide)}


def describe(guide) -> str:
    c = guide.config
    flow = {
        "IAFGuide": lambda: f"{c.steps} IAF steps, MADE {'-'.join(map(str, c.made_hidden))} "
                            f"{c.made_activation}, context {c.context}",
        "PlanarGuide": lambda: f"{c.steps} planar steps",
        "SylvesterGuide": lambda: f"{c.steps} Sylvester steps, rank {guide.rank}",
    }[type(guide).__name__]()
    return f"encoder 784-{'-'.join(map(str, c.hidden))} {c.activation}, {flow}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guide", nargs="+", choices=sorted(REFERENCES), default=["iaf"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=7, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--backend", choices=["inductor", "fx"], default="inductor",
                        help="how CompiledLoss runs its traced graph")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite (no inductor)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes, args.backend = 3, 2, [8], "fx"
        args.guide = ["iaf"]
    pyro.enable_validation(args.validate)
    print(
        f"ran: VAE 784-200-200-50 tanh decoder, Bernoulli pixels, flow guides {', '.join(args.guide)} "
        f"(defaults), single-sample ELBO with Monte Carlo KL (log q - log p at the sample), "
        f"{args.steps} steps x {args.rounds} alternating rounds per batch size, fused Adam lr 1e-3 (all), "
        f"validation {'on' if args.validate else 'off'}, seeds 0 (weights), 1 (data), 2 (loss check); "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.processor() or platform.machine()}; CompiledLoss backend {args.backend}"
    )
    bad = []
    for name in args.guide:
        for batch_size in args.batch_sizes:
            r = measure(name, batch_size, args)
            ours, theirs = r["losses"]
            print(f"{name} batch {batch_size}: {r['describe']}")
            print(f"  same loss on the same weights and noise: vaezoo {ours:.4f}, hand-written {theirs:.4f}, "
                  f"difference {ours - theirs:+.2e} -> {'agree' if r['agree'] else 'MISMATCH'}")
            med = r["medians"]
            for label, seconds in med.items():
                print(f"  {label:32s} median {1e3 * seconds:8.3f} ms/step  ratio to hand-written "
                      f"{seconds / med[HAND]:.3f}")
            if r["compiled"] is not None:
                print(f"  (CompiledLoss not timed: it runs this pair eagerly: {r['compiled']})")
            if not r["agree"]:
                bad.append((name, batch_size))
    if bad:
        raise SystemExit(f"the two steps do not compute the same loss for {bad}: they time different work")


if __name__ == "__main__":
    main()
