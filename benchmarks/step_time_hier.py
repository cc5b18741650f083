"""Training-step time: vaezoo's Pyro hierarchical VAEs against hand-written PyTorch steps of the same nets.

For each model (Ladder VAE, HVAE, Markov HVAE, VLAE) with its default guide, in the configuration
of the depth-5 hierarchy study (experiments/hierarchies.py): latent sizes 64-32-16-8-4 with
two-layer leaky-ReLU MLPs of 512-256-128-64-32 units and batch norm (the study's "+BN" runs) for
the top-down hierarchies, and five 2-d latents with MLPs of 256 units (no batch norm) for the VLAE.
Both steps start from the same weights (the reference deep-copies the model's and guide's own
networks, see hier_references.py), use the same batches, batch size and fused Adam, and compute
the same single-sample ELBO: before any step the two losses are compared on the same weights and
random numbers, and the layers with a closed-form KL in the reference are checked against
vaezoo's rule (:meth:`~vaezoo.inference.traces.PairTrace.analytic_kl`) on the live pair. Timings
alternate between the two in rounds, so drifts in machine load hit both alike. The data are fixed
random binary images.

    python benchmarks/step_time_hier.py                       # all four models, batch 100
    python benchmarks/step_time_hier.py --model lvae --batch-sizes 20 100 500
    python benchmarks/step_time_hier.py --validate            # with Pyro's distribution checks

Each model is timed four ways in one run: vaezoo eager, vaezoo compiled
(:class:`~vaezoo.inference.compiled.CompiledLoss`, inductor; ``--backend fx`` runs the traced graph
as is), hand-written eager and hand-written compiled (``torch.compile`` of the reference loss).
Compilation happens in the warm-up steps, outside the timed blocks; ``--smoke`` uses ``--backend fx``
and skips ``torch.compile`` so that the test suite does not pay for compilation.
"""

from __future__ import annotations

import argparse
import copy
import platform

import pyro
import torch
from hier_references import REFERENCES
from timing import alternating_medians, training_step, warm_up

from vaezoo import ELBO
from vaezoo.inference.compiled import CompiledLoss
from vaezoo.inference.fit import make_optimizer, parameters
from vaezoo.inference.traces import run_pair
from vaezoo.registry import build_model

# The depth-5 study configurations (experiments/hierarchies.py, Run.model_config).
TOP_DOWN = {
    "z_dims": (64, 32, 16, 8, 4),
    "hidden": (512, 256, 128, 64, 32),
    "activation": "leaky_relu",
    "batch_norm": True,
}
CONFIGS = {
    "lvae": TOP_DOWN,
    "hvae": TOP_DOWN,
    "markov_hvae": TOP_DOWN,
    "vlae": {"z_dims": (2,) * 5, "hidden": (256,)},
}
# Losses near 550 nats in float32 agree to ~1e-4; another estimator (closed-form KL in every layer of
# the HVAE) or other noise moves the batch-100 mean by 1-6 nats.
REL_TOL = 1e-5


def vaezoo_closed_form(model, guide, x: torch.Tensor) -> tuple[str, ...]:
    """The latent sites for which vaezoo's ELBO takes the KL in closed form on this pair."""
    with torch.no_grad():
        pair = run_pair(model, guide, x)
        return tuple(n for n in pair.latent if pair.analytic_kl(n) is not None)


def describe(name: str, model, guide, closed: tuple[str, ...]) -> str:
    c, gc = model.config, guide.config
    sizes = "-".join(map(str, model.z_dims))
    widths = "-".join(map(str, model.widths))
    cond = f" ({gc.conditioning})" if hasattr(gc, "conditioning") else ""
    mc = [s for s in model.layer_sites if s not in closed]
    kl = f"closed-form KL {','.join(closed) or 'none'}; Monte Carlo log p - log q {','.join(mc) or 'none'}"
    return (
        f"{name} ({type(model).__name__}) x {model.x_numel} -> z {sizes}, MLPs {widths} ({c.mlp_layers} "
        f"layers each, {c.activation}, batch norm {'on' if c.batch_norm else 'off'}), guide "
        f"{type(guide).__name__}{cond}; {kl}"
    )


def measure(name: str, batch_size: int, args) -> dict:
    """Check that both sides compute the same loss, then time them; print and return the results."""
    torch.manual_seed(0)
    model = build_model(name, **CONFIGS[name])
    guide = model.default_guide()
    data = torch.bernoulli(
        torch.rand(args.steps, batch_size, *model.x_shape, generator=torch.Generator().manual_seed(1))
    )
    batches = list(data)
    objective = ELBO()
    # Before the copy, so that the batch-norm running averages it moves are copied too.
    closed = vaezoo_closed_form(model, guide, batches[0])
    reference = REFERENCES[name](model, guide)
    same_terms = set(closed) == set(reference.closed_form)

    # Same weights and random numbers: the two losses must agree before any step (train-mode batch norm).
    torch.manual_seed(2)
    pyro_loss = objective.loss(model, guide, batches[0])
    torch.manual_seed(2)
    with torch.no_grad():
        ref_loss = reference.loss(batches[0]).item()
    agree = same_terms and abs(pyro_loss - ref_loss) <= REL_TOL * abs(ref_loss)

    # Copies made after the loss check, so every step starts from the same weights and statistics.
    fast_model, fast_guide = copy.deepcopy((model, guide))  # together: a guide may hold its model
    fast_reference = copy.deepcopy(reference)
    fast = CompiledLoss(objective, backend=args.backend)


    opt_fast = make_optimizer(parameters(fast_model, fast_guide), lr=1e-3)

    def fast_step(x):
        opt_fast.zero_grad(set_to_none=True)
        loss = fast.loss_and_grad(fast_model, fast_guide, x)
        opt_fast.step()
        return loss.item()

    steps = {
        "pyro": training_step(
            lambda x: objective.differentiable_loss(model, guide, x), parameters(model, guide)
        ),
        "fast": fast_step,
        "ref": training_step(reference.loss, reference.parameters()),
    }
    if not args.smoke:
        steps["ref_compiled"] = training_step(torch.compile(fast_reference.loss), fast_reference.parameters())
    warm_up(steps, batches[:2])
    reason = fast.eager_reason(fast_model, fast_guide, batches[0])
    if reason is not None:
        raise SystemExit(f"CompiledLoss fell back to eager on {name} ({reason}): nothing compiled to time")
    med = alternating_medians(steps, batches, args.rounds)
    med_pyro, med_ref = med["pyro"], med["ref"]

    print(
        f"ran: {describe(name, model, guide, closed)}; plain ELBO(), batch {batch_size}, "
        f"{args.steps} steps x {args.rounds} alternating rounds, fused Adam lr 1e-3 (all); "
        f"CompiledLoss backend {args.backend}"
    )
    terms = "" if same_terms else f" [closed-form layers differ: reference {reference.closed_form}]"
    print(
        f"  same loss on the same weights and noise: Pyro {pyro_loss:.4f}, hand-written {ref_loss:.4f}, "
        f"difference {pyro_loss - ref_loss:+.2e} -> {'agree' if agree else 'MISMATCH'}{terms}"
    )
    print(f"  vaezoo (Pyro) step: median {1e3 * med_pyro:.3f} ms")
    print(f"  vaezoo compiled step: median {1e3 * med['fast']:.3f} ms")
    print(f"  hand-written PyTorch step: median {1e3 * med_ref:.3f} ms")
    if "ref_compiled" in med:
        print(f"  hand-written torch.compile step: median {1e3 * med['ref_compiled']:.3f} ms")
    print(f"  ratio Pyro / PyTorch: {med_pyro / med_ref:.3f}, compiled / PyTorch: {med['fast'] / med_ref:.3f}"
          )
    return {"model": name, "batch": batch_size, **med, "agree": agree}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
    parser.add_argument("--validate", action="store_true", help="turn Pyro's validation on")
    parser.add_argument("--backend", choices=["inductor", "fx"], default="inductor",
                        help="how CompiledLoss runs its traced graph")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run of every model for the test suite (no inductor, no torch.compile)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes, args.model, args.backend = 2, 1, [16], "all", "fx"
    pyro.enable_validation(args.validate)
    print(
        f"setup: seeds 0 (weights), 1 (data), 2 (loss-check noise); validation "
        f"{'on' if args.validate else 'off'}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), pyro {pyro.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    names = list(CONFIGS) if args.model == "all" else [args.model]
    results = [measure(name, b, args) for name in names for b in args.batch_sizes]

    print(
        f"\n{'model':12s} {'batch':>5s} {'Pyro ms':>9s} {'compiled':>9s} {'PyTorch':>9s} {'PT comp.':>9s} "
        f"{'best/PT':>8s} {'best/PTc':>8s}  loss check"
    )
    for r in results:
        best = min(r["pyro"], r["fast"])
        ref_c = r.get("ref_compiled")
        print(
            f"{r['model']:12s} {r['batch']:5d} {1e3 * r['pyro']:9.3f} {1e3 * r['fast']:9.3f} "
            f"{1e3 * r['ref']:9.3f} {1e3 * ref_c if ref_c else float('nan'):9.3f} {best / r['ref']:8.3f} "
            f"{best / ref_c if ref_c else float('nan'):8.3f}  {'agree' if r['agree'] else 'MISMATCH'}"
        )
    bad = [r["model"] for r in results if not r["agree"]]
    if bad:
        raise SystemExit(f"the two steps do not compute the same loss for {bad}: they time different work")


if __name__ == "__main__":
    main()
