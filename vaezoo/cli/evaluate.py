"""``vaezoo eval`` and ``vaezoo sample``: what a trained checkpoint assigns to test data and what it draws."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from vaezoo import devices, parallel
from vaezoo.cli.base import (
    IMAGE_SUFFIXES,
    command,
    flags_of,
    restore_image_model,
    restore_with_test_set,
    result_dict,
)
from vaezoo.config import Checked, from_args
from vaezoo.files import writable_file

CHECKPOINT_HELP = "a checkpoint.pt written by vaezoo train"


@dataclass(frozen=True)
class EvalConfig(Checked):
    checkpoint: str = field(metadata={"help": CHECKPOINT_HELP})
    k: int = field(default=5000, metadata={"help": "importance samples per datapoint", "min": 1})
    n: int = field(
        default=0, metadata={"help": "evaluate the first N test images only", "min": 0, "zero": "all"}
    )
    batch_size: int = field(default=100, metadata={"help": "datapoints per batch", "min": 1})
    data_dir: str | None = field(default=None, metadata={"help": "folder of the IDX files (else as trained)"})
    seed: int = field(default=0, metadata={"help": "seed of the importance samples", "min": 0})
    json: str | None = field(default=None, metadata={"help": "also write the result to this JSON file"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    device: str = field(default="auto", metadata={"help": devices.HELP})


@command(
    "eval",
    "importance-sampled test log-likelihood (NLL ± standard error) of a checkpoint",
    flags_of(EvalConfig),
)
def evaluate(args: argparse.Namespace) -> None:
    import torch

    from vaezoo.inference import log_likelihood
    from vaezoo.inference.run_state import rank_seed

    cfg = from_args(EvalConfig, args)
    device = devices.resolve(cfg.device, "--device")
    if cfg.json:
        writable_file(cfg.json, "--json")
    w, device = parallel.join(device)  # under torchrun, each rank evaluates a part of the test set
    model, guide, test_set = restore_with_test_set(cfg, cfg.n, "eval")
    devices.to_device(device, model, guide)  # each test batch is moved there as it is drawn
    torch.manual_seed(cfg.seed if w.main else rank_seed(cfg.seed, w.rank, 0))
    result = log_likelihood(
        model, guide, test_set, k=cfg.k, batch_size=cfg.batch_size, progress=cfg.progress, split=True
    )
    if not w.main:
        return
    print(
        f"test NLL = {-result.mean:.2f} ± {result.stderr:.2f} nats "
        f"(IS k={cfg.k}, n={len(test_set)}; ± is the Monte Carlo s.e.; "
        f"test-set s.e. {result.data_stderr:.2f})"
    )
    if cfg.json:
        Path(cfg.json).write_text(
            json.dumps({"checkpoint": str(cfg.checkpoint), **result_dict(result)}, indent=2)
        )


@dataclass(frozen=True)
class SampleConfig(Checked):
    checkpoint: str = field(metadata={"help": CHECKPOINT_HELP})
    n: int = field(default=64, metadata={"help": "number of samples", "min": 1})
    out: str = field(default="samples.png", metadata={"help": "image grid to write (.png, .jpg, ...)"})
    seed: int = field(default=0, metadata={"help": "seed of the draws", "min": 0})
    binary: bool = field(default=False, metadata={"help": "draw x itself instead of showing its mean"})
    device: str = field(default="auto", metadata={"help": devices.HELP})


@command("sample", "draw samples from a trained model's prior into a PNG grid", flags_of(SampleConfig))
def sample(args: argparse.Namespace) -> None:
    import torch
    from torchvision.utils import save_image

    from vaezoo.analysis import prior_samples
    from vaezoo.errors import ConfigError

    cfg = from_args(SampleConfig, args)
    device = devices.resolve(cfg.device, "--device")
    writable_file(cfg.out, "--out", IMAGE_SUFFIXES)
    model, _, _, _ = restore_image_model(cfg.checkpoint, "sample")
    model.to(device)
    if len(model.x_shape) != 3:
        raise ConfigError(f"sample writes images, but this model's data have shape {model.x_shape}")
    torch.manual_seed(cfg.seed)
    save_image(prior_samples(model, cfg.n, mean=not cfg.binary), cfg.out, nrow=int(cfg.n**0.5) or 1)
    print(f"wrote {cfg.out}")
