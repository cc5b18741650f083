"""``vaezoo ising exact|sample|train|perturb``: the Ising layer of vaezoo on the command line.

Registered as the ``ising`` command of :mod:`vaezoo.cli`; each action is a subcommand with its own
flags. Bad input (T <= 0, a lattice size a method cannot handle) is reported in one line by the
physics functions' own errors.
"""

from __future__ import annotations

import argparse

from vaezoo.cli.base import command
from vaezoo.errors import ConfigError


def _arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{exact,sample,train,perturb}")
    exact = sub.add_parser("exact", help="exact thermodynamics of an L x L torus (and the infinite lattice)")
    exact.add_argument("--L", type=int, required=True, help="lattice side")
    exact.add_argument("--T", type=float, nargs="+", required=True, help="temperatures (J = 1)")
    exact.add_argument("--method", default="auto",
                       choices=["auto", "brute_force", "transfer_matrix", "kaufman"])
    sample = sub.add_parser("sample", help="equilibrium lattices from a Monte Carlo sampler")
    sample.add_argument("--L", type=int, required=True)
    sample.add_argument("--T", type=float, required=True)
    sample.add_argument("--n", type=int, default=64, help="lattices to draw")
    sample.add_argument("--method", default="swendsen_wang", help="swendsen_wang, heat_bath or metropolis")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default="lattices.png", help="PNG grid of the first 64 lattices")
    sample.add_argument("--save", default=None, help="also save the lattices as a .pt tensor")
    train = sub.add_parser("train", help="train the coarse-to-fine block-spin model on SW lattices")
    train.add_argument("--L", type=int, default=16)
    train.add_argument("--levels", type=int, default=3, help="latent levels (block factor 2 each)")
    train.add_argument("--latent", choices=["binary", "continuous"], default="binary")
    train.add_argument("--guide", choices=["block_amortized", "block_rg"], default="block_amortized")
    train.add_argument("--temperatures", type=float, nargs="+", default=None, help="training temperatures")
    train.add_argument("--n-per-t", type=int, default=500, help="lattices per temperature")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=100)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--baseline", default="avg", help="score-function baseline for binary latents")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/ising")
    train.add_argument("--bound-t", type=float, nargs="*", default=[], help="report the F bound at these T")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    perturb = sub.add_parser("perturb", help="resample one latent level of lattices and decode")
    perturb.add_argument("--checkpoint", required=True)
    perturb.add_argument("--T", type=float, required=True)
    perturb.add_argument("--level", type=int, nargs="*", default=None, help="levels (default: all)")
    perturb.add_argument("--n", type=int, default=16, help="lattices (Swendsen-Wang samples at T)")
    perturb.add_argument("--seed", type=int, default=0)
    perturb.add_argument("--out", default="perturb.png")


def _exact(args: argparse.Namespace) -> None:
    from vaezoo.ising import exact_thermodynamics, onsager_energy_per_site, onsager_log_z_per_site

    results = [exact_thermodynamics(args.L, T, method=args.method) for T in args.T]  # errors before output
    print(f"{'T':>8} {'method':>16} {'lnZ/N':>14} {'E/N':>12} {'C/N':>10} {'<m^2>':>10} {'<|m|>':>10}"
          f" {'lnZ/N (L=inf)':>14} {'E/N (L=inf)':>12}")
    for T, r in zip(args.T, results, strict=True):
        fmt = (lambda v: f"{v:10.6f}" if v is not None else f"{'-':>10}")  # noqa: E731
        print(f"{T:8.4f} {r.method:>16} {r.log_z_per_site:14.10f} {r.energy_per_site:12.8f} "
              f"{r.heat_capacity_per_site:10.6f} {fmt(r.magnetization_sq)} {fmt(r.abs_magnetization)} "
              f"{onsager_log_z_per_site(T):14.10f} {onsager_energy_per_site(T):12.8f}")


def _sample(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from vaezoo.ising import (
        estimate_abs_magnetization,
        estimate_binder_cumulant,
        estimate_energy_per_site,
        exact_thermodynamics,
    )
    from vaezoo.ising.sampling import sample

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    lattices = sample(args.L, args.T, args.n, method=args.method, seed=args.seed)
    rows = [("<E>/N", estimate_energy_per_site(lattices)), ("<|m|>", estimate_abs_magnetization(lattices)),
            ("U4", estimate_binder_cumulant(lattices))]
    exact = exact_thermodynamics(args.L, args.T)
    print(f"{args.n} lattices, L={args.L}, T={args.T}, {args.method} (thinned by the autocorrelation time)")
    for name, est in rows:
        print(f"  {name:6s} = {est.value:.5f} ± {est.stderr:.5f}")
    print(f"  exact <E>/N = {exact.energy_per_site:.5f} ({exact.method})")
    shown = lattices[:64]
    side = int(len(shown) ** 0.5 + 0.999)
    fig, axes = plt.subplots(side, side, figsize=(side, side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, lattice in zip(axes.flat, shown, strict=False):
        ax.imshow(lattice.numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    fig.tight_layout(pad=0.1)
    fig.savefig(args.out, dpi=80)
    plt.close(fig)
    if args.save:
        torch.save(lattices, args.save)
    print(f"wrote {args.out}" + (f" and {args.save}" if args.save else ""))


def _train(args: argparse.Namespace) -> None:
    from vaezoo.analysis.block_spin_training import bound_guide, train_block_spin
    from vaezoo.inference.free_energy import free_energy_bound
    from vaezoo.ising.lattice_data import DEFAULT_TEMPERATURES, lattice_dataset

    temperatures = args.temperatures or DEFAULT_TEMPERATURES
    data = lattice_dataset(args.L, temperatures, args.n_per_t, seed=args.seed, progress=args.progress)
    model, guide, objective, history = train_block_spin(
        data.x, levels=args.levels, latent=args.latent, guide=args.guide, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, baseline=args.baseline, out=args.out, seed=args.seed,
        progress=args.progress,
    )
    print(f"trained {args.epochs} epochs on {len(data.x)} lattices (L={args.L}, T in {list(temperatures)}); "
          f"final training loss {history[-1]['train_loss']:.3f} nats per lattice; checkpoint in {args.out}")
    if args.bound_t:
        r, _ = bound_guide(model, guide, temperatures, refine=False)
        for T in args.bound_t:
            print(free_energy_bound(model, r, T))


def _perturb(args: argparse.Namespace) -> None:
    import torch

    from vaezoo import checkpoint
    from vaezoo.analysis.perturb import perturb, perturbation_grid
    from vaezoo.ising.sampling import sample

    model, guide, _, _ = checkpoint.restore(args.checkpoint)
    spins = sample(model.config.L, args.T, args.n, seed=args.seed)
    torch.manual_seed(args.seed)
    result = perturb(model, guide, spins, args.T, levels=args.level)
    print(result.table())
    print(f"wrote {perturbation_grid(result, args.out)}")


ACTIONS = {"exact": _exact, "sample": _sample, "train": _train, "perturb": _perturb}


@command("ising", "2D Ising model: exact results, Monte Carlo, the coarse-to-fine model", _arguments)
def ising(args: argparse.Namespace) -> None:
    ACTIONS[args.action](args)
