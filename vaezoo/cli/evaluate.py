"""``vaezoo eval`` and ``vaezoo sample``: what a trained checkpoint assigns to test data and what it draws."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaezoo import checkpoint
from vaezoo.cli.base import command, restore_with_test_set, result_dict


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

    model, guide, test_set = restore_with_test_set(args, args.n)
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
            json.dumps({"checkpoint": str(args.checkpoint), **result_dict(result)}, indent=2)
        )


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

    from vaezoo.analysis import prior_samples
    from vaezoo.errors import ConfigError

    model, _, _, _ = checkpoint.restore(args.checkpoint)
    if len(model.x_shape) != 3:
        raise ConfigError(f"sample writes images, but this model's data have shape {model.x_shape}")
    torch.manual_seed(args.seed)
    save_image(prior_samples(model, args.n, mean=not args.binary), args.out, nrow=int(args.n**0.5) or 1)
    print(f"wrote {args.out}")
