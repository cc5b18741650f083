"""``vaezoo gap`` and ``vaezoo traverse``: studies of a trained checkpoint (inference gaps, latent layers)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vaezoo import devices
from vaezoo.cli.base import IMAGE_SUFFIXES, command, flags_of, restore_with_test_set
from vaezoo.cli.evaluate import CHECKPOINT_HELP
from vaezoo.config import Checked, from_args
from vaezoo.files import writable_file


@dataclass(frozen=True)
class GapConfig(Checked):
    checkpoint: str = field(metadata={"help": CHECKPOINT_HELP})
    n: int = field(default=100, metadata={"help": "test images to decompose (the first N)", "min": 1})
    is_k: int = field(default=5000, metadata={"help": "importance samples for log p(x)", "min": 1})
    ais_intermediate: int = field(
        default=1000, metadata={"help": "AIS annealing steps", "min": 0, "zero": "no AIS"}
    )
    ais_chains: int = field(default=16, metadata={"help": "AIS chains per datapoint", "min": 1})
    local_steps: int = field(
        default=3000, metadata={"help": "optimizer steps of q*_FFG and q*_flow", "min": 1}
    )
    eval_k: int = field(default=1000, metadata={"help": "samples per bound estimate", "min": 1})
    flow: bool = field(default=True, metadata={"help": "fit q*_flow too (--no-flow skips it)"})
    per_site: bool = field(
        default=False, metadata={"help": "also split the amortization gap over latent sites (L+1 more fits)"}
    )
    batch_size: int = field(default=100, metadata={"help": "datapoints per batch", "min": 1})
    data_dir: str | None = field(default=None, metadata={"help": "folder of the IDX files (else as trained)"})
    seed: int = field(default=0, metadata={"help": "seed of every estimate", "min": 0})
    json: str | None = field(default=None, metadata={"help": "also write the table to this JSON file"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    device: str = field(default="auto", metadata={"help": devices.HELP})


@command(
    "gap", "approximation and amortization gaps of a checkpoint (Cremer et al. 2018)", flags_of(GapConfig)
)
def gap(args: argparse.Namespace) -> None:
    import torch

    from vaezoo.analysis.gap import amortization_gap

    cfg = from_args(GapConfig, args)
    device = devices.resolve(cfg.device, "--device")
    if cfg.json:
        writable_file(cfg.json, "--json")
    model, guide, test_set = restore_with_test_set(cfg, cfg.n, "gap")
    devices.to_device(device, model, guide)
    torch.manual_seed(cfg.seed)
    table = amortization_gap(
        model,
        guide,
        test_set[torch.arange(len(test_set))][0].to(device),
        is_k=cfg.is_k,
        ais_intermediate=cfg.ais_intermediate,
        ais_chains=cfg.ais_chains,
        local_steps=cfg.local_steps,
        eval_k=cfg.eval_k,
        flow=cfg.flow,
        batch_size=cfg.batch_size,
        progress=cfg.progress,
        per_site=cfg.per_site,
    )
    print(table.to_markdown())
    if cfg.json:
        Path(cfg.json).write_text(
            json.dumps({"checkpoint": str(cfg.checkpoint), "n": len(test_set), **table.to_dict()}, indent=2)
        )


@dataclass(frozen=True)
class TraverseConfig(Checked):
    checkpoint: str = field(metadata={"help": CHECKPOINT_HELP})
    layer: str = field(metadata={"help": "1-based from the data up, or a site name"})
    n: int = field(default=8, metadata={"help": "variations per image (columns)", "min": 1})
    images: int = field(default=8, metadata={"help": "test images (rows)", "min": 1})
    mode: Literal["resample", "traverse"] = field(
        default="resample",
        metadata={"help": "resample the layer from its prior, or sweep one unit over mu ± span sigma"},
    )
    unit: int = field(default=0, metadata={"help": "unit swept by --mode traverse", "min": 0})
    span: float = field(default=3.0, metadata={"help": "sweep width in posterior sigmas", "above": 0})
    below: Literal["fixed", "prior", "prior_mean"] = field(
        default="fixed", metadata={"help": "what layers below the varied one do"}
    )
    data_dir: str | None = field(default=None, metadata={"help": "folder of the IDX files (else as trained)"})
    seed: int = field(default=0, metadata={"help": "seed of the draws", "min": 0})
    out: str = field(default="traverse.png", metadata={"help": "image grid to write (.png, .jpg, ...)"})
    device: str = field(default="auto", metadata={"help": devices.HELP})


@command(
    "traverse", "vary one latent layer of test images, others fixed, into a PNG", flags_of(TraverseConfig)
)
def traverse(args: argparse.Namespace) -> None:
    import torch
    from torchvision.utils import save_image

    from vaezoo.analysis.diagnostics import layer_grid

    cfg = from_args(TraverseConfig, args)
    device = devices.resolve(cfg.device, "--device")
    writable_file(cfg.out, "--out", IMAGE_SUFFIXES)
    model, guide, test_set = restore_with_test_set(cfg, cfg.images, "traverse")
    devices.to_device(device, model, guide)
    x = test_set[torch.arange(len(test_set))][0].to(device)
    layer = int(cfg.layer) if cfg.layer.isdigit() else cfg.layer
    torch.manual_seed(cfg.seed)
    grid = layer_grid(
        model, guide, x, layer, cfg.n, mode=cfg.mode, unit=cfg.unit, span=cfg.span, below=cfg.below
    )
    save_image(grid, cfg.out, nrow=cfg.n)
    print(f"wrote {cfg.out}: rows are test images, columns vary layer {cfg.layer} ({cfg.mode})")
