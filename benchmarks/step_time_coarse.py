"""Training-step time: vaezoo's coarse-to-fine models against hand-written PyTorch steps of the same nets.

Each model with its default guide and at its default sizes, trained by its objective:

- ``pixel_vae-1``: PixelVAE, one level (z 32; 3 gated masked layers of 16 channels, kernel 5, read a
  16-channel map of z made by two stride-2 transposed convolutions), ``amortized`` guide, ELBO;
- ``pixel_vae-2``: two levels (z2 32 -> z1 a 4 x 7 x 7 map), bottom-up Markov guide, ELBO;
- ``sequential_vae``: 3 steps of z 20, one shared MLP 200-200 tanh, ``amortized`` guide, ``stepwise``
  (the paper's loss: every step's Bernoulli log-likelihood of x);
- ``multistage_vae``: z 32, coarse stage of transposed convolutions (32, 64), refiner of 3 residual
  blocks of 32 channels, ``amortized`` guide, ``multistage`` (l2 of the coarse image + l1 of the fine).

Both steps start from the same weights (the reference deep-copies the model's and guide's own
networks, see coarse_references.py), use the same batches, batch size and fused Adam, and compute
the same loss: before any step the two losses are compared on the same weights and random numbers,
and the sites with a closed-form KL in the reference are checked against vaezoo's rule
(:meth:`~vaezoo.inference.traces.PairTrace.analytic_kl`) on the live pair. Timings alternate
between the two in rounds (``timing.py``), so drifts in machine load hit both alike. The data are
fixed random binary images (uniform grey levels in [0, 1] for the multi-stage VAE, whose
likelihoods are real-valued).

    OMP_NUM_THREADS=1 python benchmarks/step_time_coarse.py                   # all four, batch 100
    python benchmarks/step_time_coarse.py --model pixel_vae-2 --batch-sizes 20 100
    python benchmarks/step_time_coarse.py --smoke                             # tiny run for the test suite
"""

from __future__ import annotations

import argparse
import platform

import pyro
import torch
from coarse_references import REFERENCES
from timing import alternating_medians, training_step, warm_up

from vaezoo.inference.fit import parameters
from vaezoo.inference.traces import run_pair
from vaezoo.registry import build_model, build_objective

#: label -> (model, model config, objective).
CONFIGS = {
    "pixel_vae-1": ("pixel_vae", {"levels": 1}, "elbo"),
    "pixel_vae-2": ("pixel_vae", {"levels": 2}, "elbo"),
    "sequential_vae": ("sequential_vae", {}, "stepwise"),
    "multistage_vae": ("multistage_vae", {}, "multistage"),
}
SMOKE = {
    "pixel_vae": {
        "z_dim": 2,
        "upsample_channels": (2, 2),
        "condition_channels": 2,
        "layers": 1,
        "channels": 2,
        "latent_channels": 1,
        "prior_hidden": 4,
    },
    "sequential_vae": {"z_dim": 2, "hidden": (8,)},
    "multistage_vae": {"z_dim": 2, "channels": (2, 2), "refine_channels": 2, "refine_blocks": 1},
}
# float32 losses of a few hundred nats agree to ~1e-5 relative; another draw of z moves the batch mean
# by far more (tests/test_coarse_benchmark.py checks the losses and gradients in float64).
REL_TOL = 1e-5


def describe(label: str, model, guide, objective, closed: tuple[str, ...]) -> str:
    sizes = sum(p.numel() for p in parameters(model, guide))
    mc = [s for s in model.layer_sites if s not in closed] if hasattr(model, "layer_sites") else []
    return (
        f"{label} ({type(model).__name__}: {model.config}) with guide {type(guide).__name__}, "
        f"{sizes:,} parameters; objective {objective.describe()}; closed-form KL "
        f"{','.join(closed) or 'none'}, Monte Carlo log p - log q {','.join(mc) or 'none'}"
    )


def measure(label: str, batch_size: int, args) -> dict:
    """Check that both sides compute the same loss, then time them; print and return the results."""
    name, config, objective_name = CONFIGS[label]
    torch.manual_seed(0)
    model = build_model(name, **config, **(SMOKE[name] if args.smoke else {}))
    guide = model.default_guide()
    objective = build_objective(objective_name)
    generator = torch.Generator().manual_seed(1)
    data = torch.rand(args.steps, batch_size, *model.x_shape, generator=generator)
    batches = list(torch.bernoulli(data, generator=generator) if model.binary_data else data)
    with torch.no_grad():
        pair = run_pair(model, guide, batches[0])
        closed = tuple(n for n in pair.latent if pair.analytic_kl(n) is not None)
    reference = REFERENCES[name](model, guide, objective)
    same_terms = set(closed) == set(reference.closed_form)

    torch.manual_seed(2)
    ours = objective.loss(model, guide, batches[0])
    torch.manual_seed(2)
    with torch.no_grad():
        theirs = reference.loss(batches[0]).item()
    agree = same_terms and abs(ours - theirs) <= REL_TOL * abs(theirs)

    steps = {
        "pyro": training_step(
            lambda x: objective.differentiable_loss(model, guide, x), parameters(model, guide)
        ),
        "ref": training_step(reference.loss, reference.parameters()),
    }
    warm_up(steps, batches[:2])
    med = alternating_medians(steps, batches, args.rounds)
    print(
        f"ran: {describe(label, model, guide, objective, closed)}; batch {batch_size}, {args.steps} steps x "
        f"{args.rounds} alternating rounds, fused Adam lr 1e-3 (both)"
    )
    terms = "" if same_terms else f" [closed-form sites differ: reference {reference.closed_form}]"
    print(
        f"  same loss on the same weights and noise: Pyro {ours:.4f}, hand-written {theirs:.4f}, "
        f"difference {ours - theirs:+.2e} -> {'agree' if agree else 'MISMATCH'}{terms}"
    )
    print(
        f"  vaezoo (Pyro) step: median {1e3 * med['pyro']:.3f} ms; hand-written PyTorch step: median "
        f"{1e3 * med['ref']:.3f} ms; ratio {med['pyro'] / med['ref']:.3f}",
        flush=True,
    )
    return {"model": label, "objective": objective_name, "batch": batch_size, **med, "agree": agree}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny networks, 2 steps, 1 round (the test suite)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes, args.model = 2, 1, [4], list(CONFIGS)
    pyro.enable_validation(args.validate)
    print(
        f"setup: seeds 0 (weights), 1 (data), 2 (loss-check noise); validation "
        f"{'on' if args.validate else 'off'}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"pyro {pyro.__version__}, {platform.processor() or platform.machine()}"
    )
    results = [measure(label, b, args) for label in args.model for b in args.batch_sizes]
    print(
        f"\n{'model':15s} {'objective':10s} {'batch':>5s} {'Pyro ms':>9s} {'PyTorch ms':>10s} {'ratio':>6s}  "
        "loss check"
    )
    for r in results:
        print(
            f"{r['model']:15s} {r['objective']:10s} {r['batch']:5d} {1e3 * r['pyro']:9.2f} "
            f"{1e3 * r['ref']:10.2f} {r['pyro'] / r['ref']:6.3f}  {'agree' if r['agree'] else 'MISMATCH'}"
        )
    bad = [r["model"] for r in results if not r["agree"]]
    if bad:
        raise SystemExit(f"the two steps do not compute the same loss for {bad}: they time different work")


if __name__ == "__main__":
    main()
