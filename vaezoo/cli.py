"""The ``vaezoo`` command line: ``train``, ``eval`` and ``sample`` (also ``python -m vaezoo``).

Flags come from the config dataclasses: the training settings below, then the chosen model's,
guide's (prefixed ``--guide-``) and objective's fields, so ``vaezoo train --model vae --help``
lists exactly what that model takes, with the defaults the dataclasses hold. Errors raised on
purpose (:class:`~vaezoo.errors.VaezooError`) print as one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vaezoo import checkpoint
from vaezoo.config import add_flags, from_args, to_dict
from vaezoo.errors import VaezooError
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES


@dataclass(frozen=True)
class TrainConfig:
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    data_dir: str | None = field(
        default=None, metadata={"help": "folder of the IDX files (else VAEZOO_DATA, ...)"}
    )
    download: bool = field(default=False, metadata={"help": "download the data set if it is not found"})
    binarize: Literal["dynamic", "static", "none"] = "dynamic"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0
    out: str = field(default="runs/vae", metadata={"help": "output folder (checkpoint, images, metrics)"})
    resume: bool = field(default=True, metadata={"help": "continue from OUT/checkpoint.pt if present"})
    eval_k: int = field(
        default=0, metadata={"help": "after training, IS log-likelihood on the test set with k samples"}
    )
    train_size: int = field(default=0, metadata={"help": "use only the first N training images (0: all)"})
    test_size: int = field(default=0, metadata={"help": "use only the first N test images (0: all)"})
    validate: bool = field(default=False, metadata={"help": "Pyro's distribution argument checks (slower)"})
    progress: bool = True


EVAL_SEED = 1234  # the one fixed binarization of the test set that every evaluation uses


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser, list[str]], None]
    run: Callable[[argparse.Namespace], None]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser, list[str]], None]):
    def decorator(run: Callable[[argparse.Namespace], None]):
        COMMANDS[name] = Command(help, add_arguments, run)
        return run

    return decorator


def _subset(data, n: int):
    if n and n < len(data):
        data.images, data.labels = data.images[:n], data.labels[:n]
        if data.binarize == "static":
            data.fixed = data.fixed[:n]
    return data


def _test_split(dataset: str, binarize: str, data_dir: str | None, download: bool, size: int):
    from vaezoo import data

    test_binarize = "none" if binarize == "none" else "static"
    return _subset(data.load(dataset, "test", test_binarize, data_dir, download, seed=EVAL_SEED), size)


def _restore_with_test_set(args: argparse.Namespace, n: int):
    """The checkpoint's model and guide, and the first ``n`` images of the test split it was trained for."""
    model, guide, _, payload = checkpoint.restore(args.checkpoint)
    cfg = payload.get("meta", {}).get("train_config", {})
    dataset, binarize = cfg.get("dataset", "mnist"), cfg.get("binarize", "dynamic")
    return model, guide, _test_split(dataset, binarize, args.data_dir or cfg.get("data_dir"), False, n)


# ---------------------------------------------------------------------------------------------- train
def _train_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    # Two stages: which model, guide and objective decide which further flags exist (and --help lists).
    pre = argparse.ArgumentParser(add_help=False)
    for p in (pre, parser):
        p.add_argument("--model", default="vae", help=f"one of: {', '.join(MODELS.names())}")
        p.add_argument(
            "--guide", default=None, help=f"one of: {', '.join(GUIDES.names())} (default: the model's)"
        )
        p.add_argument("--objective", default="elbo", help=f"one of: {', '.join(OBJECTIVES.names())}")
    known, _ = pre.parse_known_args(argv)
    add_flags(parser, TrainConfig, title="training")
    add_flags(parser, MODELS.get(known.model).config, title=f"model {known.model}")
    if known.guide is not None:
        add_flags(parser, GUIDES.get(known.guide).config, prefix="guide_", title=f"guide {known.guide}")
    add_flags(parser, OBJECTIVES.get(known.objective).config, title=f"objective {known.objective}")


@command("train", "train a model and write checkpoint, images, loss curve and metrics", _train_arguments)
def train(args: argparse.Namespace) -> None:
    import torch

    from vaezoo import data
    from vaezoo.inference import fit, log_likelihood
    from vaezoo.registry import build_guide, build_model, build_objective

    cfg = from_args(TrainConfig, args)
    torch.manual_seed(cfg.seed)
    train_set = _subset(
        data.load(cfg.dataset, "train", cfg.binarize, cfg.data_dir, cfg.download, cfg.seed), cfg.train_size
    )
    test_set = _test_split(cfg.dataset, cfg.binarize, cfg.data_dir, cfg.download, cfg.test_size)
    model = build_model(args.model, from_args(MODELS.get(args.model).config, args, x_shape=train_set.x_shape))
    if args.guide is None:
        guide = model.default_guide()
    else:
        guide = build_guide(
            args.guide, model, from_args(GUIDES.get(args.guide).config, args, prefix="guide_")
        )
    objective = build_objective(args.objective, from_args(OBJECTIVES.get(args.objective).config, args))
    out = Path(cfg.out)
    meta = {"train_config": to_dict(cfg)}
    history = fit(
        model,
        guide,
        train_set,
        objective,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        test=test_set,
        out=out,
        resume=cfg.resume,
        seed=cfg.seed,
        progress=cfg.progress,
        verbose=True,
        validate=cfg.validate,
        meta=meta,
    )
    metrics = {
        "model": checkpoint.spec(model),
        "guide": checkpoint.spec(guide),
        "objective": checkpoint.spec(objective),
        "train": to_dict(cfg),
        "history": history,
    }
    if cfg.eval_k:
        result = log_likelihood(model, guide, test_set, k=cfg.eval_k, progress=cfg.progress)
        metrics["test_log_likelihood"] = _result_dict(result)
        print(
            f"test NLL = {-result.mean:.2f} ± {result.stderr:.2f} nats (IS k={cfg.eval_k}, n={len(test_set)})"
        )
    _write_figures(model, guide, test_set, history, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out}/checkpoint.pt, samples.png, reconstructions.png, loss.png, metrics.json")


def _result_dict(result) -> dict:
    return {
        "mean": result.mean,
        "mc_stderr": result.stderr,
        "data_stderr": result.data_stderr,
        "k": result.k,
        "n": len(result.per_datapoint),
    }


def _write_figures(model, guide, test_set, history, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from torchvision.utils import save_image

    from vaezoo.inference import prior_samples, reconstructions

    if len(model.x_shape) == 3:
        save_image(prior_samples(model, 64), out / "samples.png", nrow=8)
        x = test_set[torch.arange(min(32, len(test_set)))][0]
        save_image(torch.cat([x, reconstructions(model, guide, x)]), out / "reconstructions.png", nrow=8)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [-h["train_loss"] for h in history], label="train objective")
    if history and "test_bound" in history[0]:
        ax.plot(epochs, [h["test_bound"] for h in history], label="test bound")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per datapoint")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- eval
def _eval_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by vaezoo train")
    parser.add_argument(
        "--k", type=int, default=5000, help="importance samples per datapoint (default: 5000)"
    )
    parser.add_argument("--n", type=int, default=0, help="evaluate the first N test images only (0: all)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


@command(
    "eval", "importance-sampled test log-likelihood (NLL ± standard error) of a checkpoint", _eval_arguments
)
def evaluate(args: argparse.Namespace) -> None:
    import torch

    from vaezoo.inference import log_likelihood

    model, guide, test_set = _restore_with_test_set(args, args.n)
    torch.manual_seed(args.seed)
    result = log_likelihood(
        model, guide, test_set, k=args.k, batch_size=args.batch_size, progress=args.progress
    )
    print(
        f"test NLL = {-result.mean:.2f} ± {result.stderr:.2f} nats "
        f"(IS k={args.k}, n={len(test_set)}; ± is the Monte Carlo s.e.; "
        f"test-set s.e. {result.data_stderr:.2f})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"checkpoint": str(args.checkpoint), **_result_dict(result)}, indent=2)
        )


# --------------------------------------------------------------------------------------------- sample
def _sample_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--n", type=int, default=64, help="number of samples")
    parser.add_argument("--out", default="samples.png", help="PNG grid to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--binary", action="store_true", help="draw x itself instead of showing its mean")


@command("sample", "draw samples from a trained model's prior into a PNG grid", _sample_arguments)
def sample(args: argparse.Namespace) -> None:
    import torch
    from torchvision.utils import save_image

    from vaezoo.errors import ConfigError
    from vaezoo.inference import prior_samples

    model, _, _, _ = checkpoint.restore(args.checkpoint)
    if len(model.x_shape) != 3:
        raise ConfigError(f"sample writes images, but this model's data have shape {model.x_shape}")
    torch.manual_seed(args.seed)
    save_image(prior_samples(model, args.n, mean=not args.binary), args.out, nrow=int(args.n**0.5) or 1)
    print(f"wrote {args.out}")


# ------------------------------------------------------------------------------------------------ gap
def _gap_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--n", type=int, default=100, help="test images to decompose (the first N)")
    parser.add_argument("--is-k", type=int, default=5000, help="importance samples for log p(x)")
    parser.add_argument("--ais-intermediate", type=int, default=1000, help="AIS annealing steps (0: no AIS)")
    parser.add_argument("--ais-chains", type=int, default=16)
    parser.add_argument("--local-steps", type=int, default=3000, help="optimizer steps of q*_FFG and q*_flow")
    parser.add_argument("--eval-k", type=int, default=1000, help="samples per bound estimate")
    parser.add_argument("--no-flow", action="store_true", help="skip q*_flow")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


@command("gap", "approximation and amortization gaps of a checkpoint (Cremer et al. 2018)", _gap_arguments)
def gap(args: argparse.Namespace) -> None:
    import torch

    from vaezoo.inference.gap import amortization_gap

    model, guide, test_set = _restore_with_test_set(args, args.n)
    torch.manual_seed(args.seed)
    table = amortization_gap(model, guide, test_set[torch.arange(len(test_set))][0], is_k=args.is_k,
                             ais_intermediate=args.ais_intermediate, ais_chains=args.ais_chains,
                             local_steps=args.local_steps, eval_k=args.eval_k, flow=not args.no_flow,
                             batch_size=args.batch_size, progress=args.progress)
    print(table.to_markdown())
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "n": len(test_set),
                                               **table.to_dict()}, indent=2))


# ------------------------------------------------------------------------------------------- traverse
def _traverse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--layer", required=True, help="1-based from the data up, or a site name")
    parser.add_argument("--n", type=int, default=8, help="variations per image (columns)")
    parser.add_argument("--images", type=int, default=8, help="test images (rows)")
    parser.add_argument("--mode", choices=["resample", "traverse"], default="resample",
                        help="resample the layer from its prior, or sweep one unit over mu ± span sigma")
    parser.add_argument("--unit", type=int, default=0, help="unit swept by --mode traverse")
    parser.add_argument("--span", type=float, default=3.0)
    parser.add_argument("--below", choices=["fixed", "prior", "prior_mean"], default="fixed",
                        help="what layers below the varied one do")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="traverse.png")


@command("traverse", "vary one latent layer of test images, others fixed, into a PNG", _traverse_arguments)
def traverse(args: argparse.Namespace) -> None:
    import torch
    from torchvision.utils import save_image

    from vaezoo.inference.diagnostics import layer_grid

    model, guide, test_set = _restore_with_test_set(args, args.images)
    x = test_set[torch.arange(len(test_set))][0]
    layer = int(args.layer) if args.layer.isdigit() else args.layer
    torch.manual_seed(args.seed)
    grid = layer_grid(model, guide, x, layer, args.n, mode=args.mode, unit=args.unit, span=args.span,
                      below=args.below)
    save_image(grid, args.out, nrow=args.n)
    print(f"wrote {args.out}: rows are test images, columns vary layer {args.layer} ({args.mode})")


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="vaezoo", description=__doc__.splitlines()[0])
    top.add_argument(
        "command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {c.help}" for k, c in COMMANDS.items())
    )
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose one of {', '.join(sorted(COMMANDS))}")
    cmd = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"vaezoo {name}", description=cmd.help)
    try:
        cmd.add_arguments(parser, rest)
        args = parser.parse_args(rest)
        cmd.run(args)
    except VaezooError as e:
        print(f"vaezoo {name}: error: {e}", file=sys.stderr)
        return 2
    return 0


# Commands defined next to what they drive register themselves on import.
from vaezoo.ising import commands as _ising_commands  # noqa: E402, F401
