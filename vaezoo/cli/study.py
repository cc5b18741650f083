"""``vaezoo gap`` and ``vaezoo traverse``: studies of a trained checkpoint (inference gaps, latent layers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaezoo.cli.base import command, restore_with_test_set


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

    from vaezoo.analysis.gap import amortization_gap

    model, guide, test_set = restore_with_test_set(args, args.n)
    torch.manual_seed(args.seed)
    table = amortization_gap(model, guide, test_set[torch.arange(len(test_set))][0], is_k=args.is_k,
                             ais_intermediate=args.ais_intermediate, ais_chains=args.ais_chains,
                             local_steps=args.local_steps, eval_k=args.eval_k, flow=not args.no_flow,
                             batch_size=args.batch_size, progress=args.progress)
    print(table.to_markdown())
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "n": len(test_set),
                                               **table.to_dict()}, indent=2))


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

    from vaezoo.analysis.diagnostics import layer_grid

    model, guide, test_set = restore_with_test_set(args, args.images)
    x = test_set[torch.arange(len(test_set))][0]
    layer = int(args.layer) if args.layer.isdigit() else args.layer
    torch.manual_seed(args.seed)
    grid = layer_grid(model, guide, x, layer, args.n, mode=args.mode, unit=args.unit, span=args.span,
                      below=args.below)
    save_image(grid, args.out, nrow=args.n)
    print(f"wrote {args.out}: rows are test images, columns vary layer {args.layer} ({args.mode})")
