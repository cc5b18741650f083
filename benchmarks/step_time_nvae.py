"""Training-step time of the NVAE-style model against the Ladder VAE it is compared with (issue 10).

Both are vaezoo pairs in the configurations of ``experiments/hierarchies.py`` (runs ``nvae-4-bn-wu``
and ``lvae-5-bn-wu``): the NVAE with its CPU-sized defaults (2 scales x 2 groups, residual cells) and
the ``nvae_elbo`` objective during warm-up (KL balancing and spectral regularization on), the Ladder
VAE with latents 64-32-16-8-4, MLPs of 512-256-128-64-32 units, batch norm and the ELBO. Both take
the same batches of fixed random binary images, fused Adam, timed in alternating rounds so drifts in
machine load hit both alike. The ratio converts the study's equal-epoch comparison into an
equal-wall-clock one on the same machine.

    OMP_NUM_THREADS=1 python benchmarks/step_time_nvae.py
"""

from __future__ import annotations

import argparse
import platform

import pyro
import torch
from timing import alternating_medians, training_step, warm_up

from vaezoo import build_model, build_objective
from vaezoo.inference.fit import parameters

LVAE = {
    "z_dims": (64, 32, 16, 8, 4),
    "hidden": (512, 256, 128, 64, 32),
    "activation": "leaky_relu",
    "batch_norm": True,
}


def pair_step(name: str, config: dict, objective: str, progress: float):
    model = build_model(name, **config)
    guide = model.default_guide()
    loss = build_objective(objective, kl_warmup=2.5)
    step = training_step(
        lambda x: loss.differentiable_loss(model, guide, x, progress), parameters(model, guide)
    )
    return step, sum(p.numel() for p in parameters(model, guide))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per model")
    parser.add_argument("--smoke", action="store_true", help="tiny models and 2 steps (the test suite)")
    args = parser.parse_args(argv)
    pyro.set_rng_seed(0)
    nvae = {"channels": 2, "latent_channels": 2, "preprocess_blocks": 1} if args.smoke else {}
    lvae = {**LVAE, "hidden": (16,) * 5} if args.smoke else LVAE
    steps, rounds = (2, 1) if args.smoke else (args.steps, args.rounds)
    generator = torch.Generator().manual_seed(1)
    batches = [
        torch.bernoulli(torch.full((args.batch_size, 1, 28, 28), 0.3), generator=generator)
        for _ in range(steps)
    ]
    made = {
        "nvae (nvae_elbo)": pair_step("nvae", nvae, "nvae_elbo", 1.0),
        "lvae-5-bn (elbo)": pair_step("lvae", lvae, "elbo", 1.0),
    }
    timed = {name: step for name, (step, _) in made.items()}
    warm_up(timed, batches[:2])
    medians = alternating_medians(timed, batches, rounds)
    print(
        f"ran: batch {args.batch_size}, {steps} steps x {rounds} alternating rounds, fused Adam lr 1e-3, "
        f"warm-up weight 0.4 (KL balancing on); torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"pyro {pyro.__version__}, {platform.machine()}"
    )
    for name, (_, count) in made.items():
        print(f"  {name:18s} {count:>9,d} parameters   median {1e3 * medians[name]:8.1f} ms/step")
    ratio = medians["nvae (nvae_elbo)"] / medians["lvae-5-bn (elbo)"]
    print(f"ratio nvae / lvae: {ratio:.2f} (an LVAE epoch costs 1/{ratio:.1f} of an NVAE epoch)")


if __name__ == "__main__":
    main()
