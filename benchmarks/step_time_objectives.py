"""Training-step time of the beta_tcvae, info_vae and vq objectives against hand-written PyTorch steps.

One training step is what :func:`~vaezoo.inference.fit.fit` does per batch: the objective's
differentiable loss on model and guide, its gradient and one fused Adam step (lr 1e-3). The
hand-written references (``objective_references.py``) deep-copy the same networks and compute the
same loss with the same estimator and no Pyro: beta-TCVAE's minibatch-weighted sampling with the
dataset size N, InfoVAE's unbiased MMD^2 with its Gaussian kernel and closed-form KL, the VQ-VAE's
codebook and commitment losses with the straight-through value and the codebook's restarts of unused
codes. Before timing, the two losses are compared on the same weights and noise (a mismatch stops the
run). Both use the same batches (fixed random binary images); timings alternate between the
implementations in rounds (``timing.py``), and medians are reported with the ratio to the hand-written
step.

Models at their defaults: beta_tcvae and info_vae train the VAE 784-200-200-50 tanh with its
amortized Gaussian guide (objectives at their defaults: N = 60000, alpha = gamma = 1, beta = 6;
alpha = 1, lambda = 1000, Gaussian kernel, bandwidth 1); vq trains the ``vqvae`` model (K = 64 codes
of dimension 16 on a 7 x 7 map, 32-channel convolutions) with its ``vq`` guide, commitment 0.25.

    OMP_NUM_THREADS=1 python benchmarks/step_time_objectives.py              # batch sizes 20, 100
    python benchmarks/step_time_objectives.py --smoke                         # tiny run for the test suite
"""

from __future__ import annotations

import argparse
import platform

import pyro
import torch
from objective_references import REFERENCES
from timing import alternating_medians, training_step, warm_up

from vaezoo.inference.fit import parameters
from vaezoo.registry import build_model, build_objective

MODELS = {"beta_tcvae": "vae", "info_vae": "vae", "vq": "vqvae"}
# float32 losses of a few hundred nats agree to ~1e-5 relative; other noise or another estimator moves
# the batch mean by far more (tests/test_objective_benchmark.py checks both in float64).
REL_TOL = 1e-5


def measure(name: str, batch_size: int, steps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    model = build_model(MODELS[name])
    guide = model.default_guide()
    objective = build_objective(name)
    reference = REFERENCES[name](model, guide, objective)
    generator = torch.Generator().manual_seed(1)
    batches = list(torch.bernoulli(torch.rand(steps, batch_size, *model.x_shape, generator=generator)))
    torch.manual_seed(2)
    ours = objective.loss(model, guide, batches[0])
    torch.manual_seed(2)
    with torch.no_grad():
        theirs = reference.loss(batches[0]).item()
    timed = {
        f"vaezoo {name}": training_step(lambda x: objective.differentiable_loss(model, guide, x),
                                        parameters(model, guide)),
        f"hand-written {name}": training_step(reference.loss, reference.parameters()),
    }
    warm_up(timed, batches[:3])
    return {"medians": alternating_medians(timed, batches, rounds), "losses": (ours, theirs),
            "agree": abs(ours - theirs) <= REL_TOL * abs(theirs)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", choices=sorted(REFERENCES), default=sorted(REFERENCES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per implementation")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.batch_sizes = 3, 1, [8]
    pyro.enable_validation(False)
    print(
        f"ran: {', '.join(args.objectives)} (vae 784-200-200-50 tanh + amortized guide; vqvae K=64 D=16 "
        f"7x7 + vq guide), objectives at their defaults, fused Adam lr 1e-3 (all), {args.steps} steps x "
        f"{args.rounds} alternating rounds per batch size, validation off, seeds 0 (weights), 1 (data), "
        f"2 (loss check); torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"pyro {pyro.__version__}, {platform.processor() or platform.machine()}"
    )
    bad = []
    for batch_size in args.batch_sizes:
        print(f"batch {batch_size}:")
        for name in args.objectives:
            r = measure(name, batch_size, args.steps, args.rounds)
            (ours, theirs), med = r["losses"], r["medians"]
            mine, hand = med[f"vaezoo {name}"], med[f"hand-written {name}"]
            print(f"  {name:10s} vaezoo {1e3 * mine:8.3f} ms/step, hand-written {1e3 * hand:8.3f} ms/step, "
                  f"ratio {mine / hand:.3f}   (same loss: {ours:.4f} vs {theirs:.4f}, "
                  f"{'agree' if r['agree'] else 'MISMATCH'})", flush=True)
            if not r["agree"]:
                bad.append((name, batch_size))
    if bad:
        raise SystemExit(f"the two steps do not compute the same loss for {bad}: they time different work")


if __name__ == "__main__":
    main()
