"""``vaezoo train``: fit a registered model, guide and objective on MNIST or Fashion-MNIST."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vaezoo import checkpoint, devices, parallel
from vaezoo.cli.base import OWN_COMMANDS, command, result_dict, subset, test_split
from vaezoo.config import Checked, add_flags, from_args, to_dict
from vaezoo.errors import ConfigError
from vaezoo.files import writable_dir
from vaezoo.loggers import make_logger
from vaezoo.registry import GUIDES, MODELS, OBJECTIVES


@dataclass(frozen=True)
class TrainConfig(Checked):
    dataset: Literal["mnist", "fashion-mnist", "sprites"] = "mnist"
    data_dir: str | None = field(
        default=None, metadata={"help": "folder of the IDX files (else VAEZOO_DATA, ...)"}
    )
    download: bool = field(default=False, metadata={"help": "download the data set if it is not found"})
    binarize: Literal["dynamic", "static", "none", "dequantize"] = field(
        default="dynamic",
        metadata={"help": "dynamic/static binary; none: grey/255; dequantize: (grey + U(0,1)) / 256"},
    )
    epochs: int = field(default=10, metadata={"help": "passes over the training set", "min": 1})
    batch_size: int = field(default=100, metadata={"help": "images per optimizer step", "min": 1})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate", "above": 0})
    seed: int = field(default=0, metadata={"help": "seed of weights, batches and binarization", "min": 0})
    out: str = field(default="runs/vae", metadata={"help": "output folder (checkpoint, images, metrics)"})
    resume: bool = field(default=True, metadata={"help": "continue from OUT/checkpoint.pt if present"})
    eval_k: int = field(
        default=0,
        metadata={
            "help": "after training, IS log-likelihood on the test set with k samples",
            "min": 0,
            "zero": "no evaluation",
        },
    )
    train_size: int = field(
        default=0, metadata={"help": "use only the first N training images", "min": 0, "zero": "all"}
    )
    test_size: int = field(
        default=0, metadata={"help": "use only the first N test images", "min": 0, "zero": "all"}
    )
    validate: bool = field(default=False, metadata={"help": "Pyro's distribution argument checks (slower)"})
    progress: bool = True
    device: str = field(default="auto", metadata={"help": devices.HELP})
    compile: Literal["none", "fx", "inductor"] = field(
        default="none",
        metadata={
            "help": "trace each step's loss and gradients once per batch shape and run them as one graph: "
            "fx (no compile time) or inductor (compiled, faster, seconds to a minute per shape)"
        },
    )
    logger: Literal["csv", "tensorboard", "none"] = field(
        default="csv",
        metadata={"help": "per-epoch log: OUT/log.csv, TensorBoard events in OUT, or none"},
    )


#: What each ``--logger`` writes into OUT, for the closing message.
LOG_FILES = {"csv": ", log.csv, config.json", "tensorboard": ", TensorBoard events", "none": ""}

#: The fields of :class:`TrainConfig` that say what the training data are; with the model, guide,
#: objective, batch size, learning rate and seed they define a run, so resuming with others is refused.
DATA_FIELDS = ("dataset", "data_dir", "binarize", "train_size")


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
    if known.model in OWN_COMMANDS:
        raise ConfigError(
            f"--model {known.model}: this model is trained with `{OWN_COMMANDS[known.model]} train`, "
            f"not vaezoo train (see {OWN_COMMANDS[known.model]} train --help)"
        )
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

    # Every flag and the output folder are checked before any data is loaded or any step taken.
    cfg = from_args(TrainConfig, args)
    from_args(MODELS.get(args.model).config, args)
    guide_config = None
    if args.guide is not None:
        guide_config = from_args(GUIDES.get(args.guide).config, args, prefix="guide_")
    objective_config = from_args(OBJECTIVES.get(args.objective).config, args)
    out = writable_dir(cfg.out, "--out")
    device = devices.resolve(cfg.device, "--device")
    logger = make_logger(cfg.logger, out, images=_sample_grid)
    if guide_config is not None:
        # Constraints between guide and model (a Sylvester rank above the latent size) fail here, not
        # after the data are read; built before seeding, so the run's random numbers are unchanged.
        build_guide(args.guide, build_model(args.model, from_args(MODELS.get(args.model).config, args)),
                    guide_config)
    torch.manual_seed(cfg.seed)
    train_set = subset(
        data.load(cfg.dataset, "train", cfg.binarize, cfg.data_dir, cfg.download, cfg.seed), cfg.train_size
    )
    test_set = test_split(cfg.dataset, cfg.binarize, cfg.data_dir, cfg.download, cfg.test_size)
    model = build_model(args.model, from_args(MODELS.get(args.model).config, args, x_shape=train_set.x_shape))
    guide = model.default_guide() if guide_config is None else build_guide(args.guide, model, guide_config)
    objective = build_objective(args.objective, objective_config)
    meta = {"train_config": to_dict(cfg)}
    data_spec = {**{k: getattr(cfg, k) for k in DATA_FIELDS}, "source": train_set.source}
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
        data_spec=data_spec,
        device=device,
        logger=logger,
        compile=None if cfg.compile == "none" else cfg.compile,
        epoch_metrics=_active_units(test_set),
    )
    metrics = {
        "model": checkpoint.spec(model),
        "guide": checkpoint.spec(guide),
        "objective": checkpoint.spec(objective),
        "train": to_dict(cfg),
        "history": history,
    }
    w = parallel.world()  # fit joined the processes torchrun started, if any
    if cfg.eval_k:
        result = log_likelihood(model, guide, test_set, k=cfg.eval_k, progress=cfg.progress, split=True)
        metrics["test_log_likelihood"] = result_dict(result)
        if w.main:
            print(
                f"test NLL = {-result.mean:.2f} ± {result.stderr:.2f} nats "
                f"(IS k={cfg.eval_k}, n={len(test_set)})"
            )
    if not w.main:  # rank 0 alone writes figures and metrics
        return
    _write_figures(model, guide, test_set, history, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"wrote {out}/checkpoint.pt, samples.png, reconstructions.png, loss.png, metrics.json"
        + LOG_FILES[cfg.logger]
    )


def _active_units(test_set, n: int = 500):
    """Per-epoch active units (Burda et al. 2016: Cov_x E_q[z_u | x] > 0.01) over the first ``n``
    test images, all layers together: one guide pass over them, cheap next to an epoch."""
    import torch

    from vaezoo.analysis import active_units, posterior_means

    x = test_set[torch.arange(min(n, len(test_set)))][0]

    def metrics(model, guide) -> dict[str, float]:
        means = posterior_means(model, guide, x.to(devices.module_device(model)), num_particles=2)
        return {"active_units": float(sum(active_units(means).values()))}

    return metrics


def _sample_grid(model, guide):
    """64 prior samples of an image model, for the TensorBoard logger; ``None`` for other data."""
    from vaezoo.analysis import prior_samples

    return prior_samples(model, 64) if len(model.x_shape) == 3 else None


def _write_figures(model, guide, test_set, history, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from torchvision.utils import save_image

    from vaezoo.analysis import prior_samples, reconstructions

    if len(model.x_shape) == 3:
        save_image(prior_samples(model, 64), out / "samples.png", nrow=8)
        x = test_set[torch.arange(min(32, len(test_set)))][0].to(devices.module_device(model))
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
