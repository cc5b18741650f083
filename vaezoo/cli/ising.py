"""``vaezoo ising exact|sample|train|perturb``: the Ising layer of vaezoo on the command line.

Registered as the ``ising`` command of :mod:`vaezoo.cli`; each action is a subcommand whose flags are
the fields of a config dataclass with declared constraints, checked before any work, as the image
commands' are. Then, still before any work: output paths for writability, the size limit of an exact
method, a checkpoint's kind, and the memory and time a run will take (:mod:`vaezoo.ising.budget`),
refused past a sane limit unless ``--force``. Sampled lattices are written (atomically) before the
picture of them, so a picture that cannot be written never loses them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

from vaezoo import checkpoint
from vaezoo.cli.base import command
from vaezoo.config import Checked, add_flags, from_args
from vaezoo.errors import CheckpointError, ConfigError
from vaezoo.files import atomic_write, writable_dir, writable_file
from vaezoo.ising.budget import Budget, exact_budget, sampling_budget
from vaezoo.ising.exact.common import MAX_BRUTE_FORCE_L, MAX_TRANSFER_MATRIX_L, check_size

FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
FORCE = {"help": "run even when the estimated memory or time is past the limit"}
#: The exact methods with a size limit, and the name their error gives them.
SIZE_LIMITS = {"brute_force": (MAX_BRUTE_FORCE_L, "brute-force enumeration"),
               "transfer_matrix": (MAX_TRANSFER_MATRIX_L, "the transfer matrix")}
IMAGE_COMMANDS = "vaezoo eval, sample, gap or traverse"


@dataclass(frozen=True)
class ExactConfig(Checked):
    L: int = field(metadata={"help": "lattice side", "min": 2})
    T: tuple[float, ...] = field(metadata={"help": "temperatures (J = 1)", "above": 0, "min_len": 1})
    method: Literal["auto", "brute_force", "transfer_matrix", "kaufman"] = field(
        default="auto", metadata={"help": "brute_force: L <= 5, transfer_matrix: L <= 12, kaufman: any L"}
    )
    force: bool = field(default=False, metadata=FORCE)


@dataclass(frozen=True)
class IsingSampleConfig(Checked):
    L: int = field(metadata={"help": "lattice side (even for heat_bath and metropolis)", "min": 2})
    T: float = field(metadata={"help": "temperature (J = 1)", "above": 0})
    n: int = field(default=64, metadata={"help": "lattices to draw", "min": 1})
    method: Literal["swendsen_wang", "heat_bath", "metropolis"] = "swendsen_wang"
    seed: int = field(default=0, metadata={"help": "seed of the sampler", "min": 0})
    out: str = field(
        default="lattices.png", metadata={"help": "picture of the first 64 lattices (.png, ...)"}
    )
    save: str | None = field(default=None, metadata={"help": "also save the lattices as a .pt tensor"})
    force: bool = field(default=False, metadata=FORCE)


@dataclass(frozen=True)
class IsingTrainConfig(Checked):
    L: int = field(default=16, metadata={"help": "lattice side, a multiple of 2^levels", "min": 2})
    levels: int = field(default=3, metadata={"help": "latent levels (block factor 2 each)", "min": 1})
    latent: Literal["binary", "continuous"] = "binary"
    guide: Literal["block_amortized", "block_rg"] = "block_amortized"
    temperatures: tuple[float, ...] | None = field(
        default=None, metadata={"help": "training temperatures (else 12 in [1.5, 3.5] with T_c)", "above": 0,
                                "min_len": 1}
    )
    n_per_t: int = field(default=500, metadata={"help": "lattices per temperature", "min": 1})
    epochs: int = field(default=20, metadata={"help": "passes over the lattices", "min": 1})
    batch_size: int = field(default=100, metadata={"help": "lattices per optimizer step", "min": 1})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate", "above": 0})
    baseline: Literal["none", "avg", "nvil"] = field(
        default="avg", metadata={"help": "score-function baseline for binary latents"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the lattices and the weights", "min": 0})
    out: str = field(default="runs/ising", metadata={"help": "output folder (checkpoint, metrics)"})
    bound_t: tuple[float, ...] = field(
        default=(), metadata={"help": "report the free-energy bound at these T", "above": 0}
    )
    progress: bool = True
    force: bool = field(default=False, metadata=FORCE)


@dataclass(frozen=True)
class PerturbConfig(Checked):
    checkpoint: str = field(metadata={"help": "a checkpoint.pt written by vaezoo ising train"})
    T: float = field(metadata={"help": "temperature of the lattices (J = 1)", "above": 0})
    level: tuple[int, ...] | None = field(
        default=None, metadata={"help": "levels to perturb, 0 = spins (default: all)", "min": 0}
    )
    n: int = field(default=16, metadata={"help": "lattices (Swendsen-Wang samples at T)", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed of the lattices and the draws", "min": 0})
    out: str = field(default="perturb.png", metadata={"help": "picture to write (.png, ...)"})
    force: bool = field(default=False, metadata=FORCE)


CONFIGS = {
    "exact": (ExactConfig, "exact thermodynamics of an L x L torus (and the infinite lattice)"),
    "sample": (IsingSampleConfig, "equilibrium lattices from a Monte Carlo sampler"),
    "train": (IsingTrainConfig, "train the coarse-to-fine block-spin model on SW lattices"),
    "perturb": (PerturbConfig, "resample one latent level of lattices and decode"),
}


def _arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{" + ",".join(CONFIGS) + "}")
    for name, (config, help_text) in CONFIGS.items():
        add_flags(sub.add_parser(name, help=help_text, description=help_text), config, title="options")


def _within(budget: Budget, flags: str, force: bool) -> None:
    budget.check(flags, force, fix="lower them, or pass --force to run anyway")


def _exact(args: argparse.Namespace) -> None:
    from vaezoo.ising import exact_thermodynamics, onsager_energy_per_site, onsager_log_z_per_site

    cfg = from_args(ExactConfig, args)
    if cfg.method in SIZE_LIMITS:
        try:
            check_size(cfg.L, *SIZE_LIMITS[cfg.method])
        except ConfigError as e:
            raise ConfigError(f"--L {cfg.L} --method {cfg.method}: {e}") from None
    _within(exact_budget(cfg.L, cfg.method), f"--L {cfg.L} --method {cfg.method}", cfg.force)
    results = []
    for T in cfg.T:  # every temperature before any output, so an error leaves no partial table
        try:
            results.append(exact_thermodynamics(cfg.L, T, method=cfg.method))
        except ConfigError as e:
            raise ConfigError(f"--T {T!r}: {e}") from None
    print(f"{'T':>10} {'method':>16} {'lnZ/N':>14} {'E/N':>12} {'C/N':>10} {'<m^2>':>10} {'<|m|>':>10}"
          f" {'lnZ/N (L=inf)':>14} {'E/N (L=inf)':>12}")

    def fmt(v: float | None) -> str:
        return f"{v:10.6f}" if v is not None else f"{'-':>10}"

    for T, r in zip(cfg.T, results, strict=True):
        print(f"{T:10.5g} {r.method:>16} {r.log_z_per_site:14.10g} {r.energy_per_site:12.8f} "
              f"{r.heat_capacity_per_site:10.6f} {fmt(r.magnetization_sq)} {fmt(r.abs_magnetization)} "
              f"{onsager_log_z_per_site(T):14.10g} {onsager_energy_per_site(T):12.8f}")


def _save_figure(fig, path: str) -> None:
    from pathlib import Path

    atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix[1:].lower(), dpi=80), sync=False)


def _sample(args: argparse.Namespace) -> None:
    cfg = from_args(IsingSampleConfig, args)
    writable_file(cfg.out, "--out", FIGURE_SUFFIXES)
    if cfg.save:
        writable_file(cfg.save, "--save", (".pt", ".pth"))
    if cfg.method != "swendsen_wang" and cfg.L % 2:
        raise ConfigError(f"--L {cfg.L} --method {cfg.method}: this method needs an even L; "
                          "use --method swendsen_wang")
    _within(sampling_budget(cfg.L, cfg.n), f"--L {cfg.L} --n {cfg.n}", cfg.force)

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

    lattices = sample(cfg.L, cfg.T, cfg.n, method=cfg.method, seed=cfg.seed)
    if cfg.save:  # the data first: a picture that cannot be written must not lose them
        atomic_write(cfg.save, lambda f: torch.save(lattices, f))
    rows = [("<E>/N", estimate_energy_per_site(lattices)), ("<|m|>", estimate_abs_magnetization(lattices)),
            ("U4", estimate_binder_cumulant(lattices))]
    exact = exact_thermodynamics(cfg.L, cfg.T)
    print(f"{cfg.n} lattices, L={cfg.L}, T={cfg.T:g}, {cfg.method} (thinned by the autocorrelation time)")
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
    try:
        _save_figure(fig, cfg.out)
    except OSError as e:
        kept = f"the lattices are saved in {cfg.save}" if cfg.save else "pass --save to keep the lattices"
        raise ConfigError(f"--out {cfg.out}: could not write the picture ({e}); {kept}") from None
    finally:
        plt.close(fig)
    print(f"wrote {cfg.out}" + (f" and {cfg.save}" if cfg.save else ""))


def _train(args: argparse.Namespace) -> None:
    from vaezoo.config import from_dict
    from vaezoo.models.block_spin import BlockSpin, BlockSpinConfig

    cfg = from_args(IsingTrainConfig, args)
    try:
        BlockSpin(from_dict(BlockSpinConfig, L=cfg.L, levels=cfg.levels, latent=cfg.latent))
    except ConfigError as e:
        raise ConfigError(f"--L {cfg.L} --levels {cfg.levels}: {e}") from None
    writable_dir(cfg.out, "--out")

    from vaezoo.ising.lattice_data import DEFAULT_TEMPERATURES

    temperatures = cfg.temperatures or DEFAULT_TEMPERATURES
    one = sampling_budget(cfg.L, cfg.n_per_t)
    data_bytes = len(temperatures) * cfg.n_per_t * 2 * cfg.L**2 * 4
    budget = Budget(one.memory + data_bytes, one.work * len(temperatures))
    _within(budget, f"--L {cfg.L} --n-per-t {cfg.n_per_t} with {len(temperatures)} temperatures", cfg.force)

    from vaezoo.analysis.block_spin_training import bound_guide, train_block_spin
    from vaezoo.inference.free_energy import free_energy_bound
    from vaezoo.ising.lattice_data import lattice_dataset

    data = lattice_dataset(cfg.L, temperatures, cfg.n_per_t, seed=cfg.seed, progress=cfg.progress)
    model, guide, objective, history = train_block_spin(
        data.x, levels=cfg.levels, latent=cfg.latent, guide=cfg.guide, epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, baseline=cfg.baseline, out=cfg.out, seed=cfg.seed,
        progress=cfg.progress,
    )
    print(f"trained {cfg.epochs} epochs on {len(data.x)} lattices (L={cfg.L}, T in {list(temperatures)}); "
          f"final training loss {history[-1]['train_loss']:.3f} nats per lattice; checkpoint in {cfg.out}")
    if cfg.bound_t:
        r, _ = bound_guide(model, guide, temperatures, refine=False)
        for T in cfg.bound_t:
            print(free_energy_bound(model, r, T))


def load_block_spin(path: str) -> dict:
    """The payload of a block-spin checkpoint for ``vaezoo ising``.

    :raises CheckpointError: for a missing or corrupt file (:func:`vaezoo.checkpoint.load`'s message),
        or a checkpoint of an image model, naming the commands that read it.
    """
    try:
        payload = checkpoint.load(path)
    except CheckpointError as e:
        hint = "a block-spin checkpoint comes from vaezoo ising train --out DIR"
        raise CheckpointError(f"{e} ({hint})") from None
    name = payload["model"]["name"]
    if name != "block_spin":
        raise CheckpointError(
            f"--checkpoint {path} holds a {name} model, an image model, which vaezoo ising does not read; "
            f"use {IMAGE_COMMANDS} (see vaezoo eval --help)"
        )
    return payload


def _perturb(args: argparse.Namespace) -> None:
    cfg = from_args(PerturbConfig, args)
    writable_file(cfg.out, "--out", FIGURE_SUFFIXES)
    payload = load_block_spin(cfg.checkpoint)
    L, levels = payload["model"]["config"]["L"], payload["model"]["config"]["levels"]
    bad = [lv for lv in cfg.level or () if lv > levels]
    if bad:
        given = " ".join(map(str, cfg.level))
        raise ConfigError(f"--level {given}: this model has levels 0 (spins) to {levels}")
    _within(sampling_budget(L, cfg.n), f"--n {cfg.n} at the model's L = {L}", cfg.force)

    import torch

    from vaezoo.analysis.perturb import perturb, perturbation_grid
    from vaezoo.ising.sampling import sample

    model, guide, _, _ = checkpoint.restore(cfg.checkpoint, payload)
    spins = sample(L, cfg.T, cfg.n, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    result = perturb(model, guide, spins, cfg.T, levels=None if cfg.level is None else list(cfg.level))
    print(result.table())
    print(f"wrote {perturbation_grid(result, cfg.out)}")


ACTIONS = {"exact": _exact, "sample": _sample, "train": _train, "perturb": _perturb}


@command("ising", "2D Ising model: exact results, Monte Carlo, the coarse-to-fine model", _arguments)
def ising(args: argparse.Namespace) -> None:
    ACTIONS[args.action](args)
