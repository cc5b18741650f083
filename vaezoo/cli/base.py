"""The command registry of the ``vaezoo`` command line, and what several commands share: the one fixed
test split every evaluation uses, restoring a checkpoint of the right kind, and the summary of a
log-likelihood result."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from vaezoo import checkpoint
from vaezoo.config import add_flags
from vaezoo.errors import CheckpointError

EVAL_SEED = 1234  # the one fixed binarization of the test set that every evaluation uses
#: Models trained and studied by a command group of their own, not on images by train/eval/...
OWN_COMMANDS = {"block_spin": "vaezoo ising"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

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


def flags_of(config: type) -> Callable[[argparse.ArgumentParser, list[str]], None]:
    """The ``add_arguments`` of a command whose flags are exactly the fields of dataclass ``config``."""
    return lambda parser, argv: add_flags(parser, config, title="options")


def subset(data, n: int):
    if n and n < len(data):
        data.images, data.labels = data.images[:n], data.labels[:n]
        if data.binarize == "static":
            data.fixed = data.fixed[:n]
    return data


def test_split(dataset: str, binarize: str, data_dir: str | None, download: bool, size: int):
    from vaezoo import data

    # Real-valued test sets keep the training set's form; binary ones are binarized once, seeded.
    test_binarize = binarize if binarize in ("none", "dequantize") else "static"
    return subset(data.load(dataset, "test", test_binarize, data_dir, download, seed=EVAL_SEED), size)


def restore_image_model(path: str, command: str):
    """``(model, guide, objective, payload)`` of a checkpoint of an image model, for ``vaezoo <command>``.

    :raises CheckpointError: for a checkpoint of a model with its own command group, naming it.
    """
    payload = checkpoint.load(path)
    name = payload["model"]["name"]
    if name in OWN_COMMANDS:
        raise CheckpointError(
            f"--checkpoint {path} holds a {name} model, which vaezoo {command} does not read; "
            f"use {OWN_COMMANDS[name]} (see {OWN_COMMANDS[name]} --help)"
        )
    return checkpoint.restore(path, payload)


def restore_with_test_set(cfg, n: int, command: str):
    """The checkpoint's model and guide, and the first ``n`` images of the test split it was trained for."""
    model, guide, _, payload = restore_image_model(cfg.checkpoint, command)
    train = payload.get("meta", {}).get("train_config", {})
    dataset, binarize = train.get("dataset", "mnist"), train.get("binarize", "dynamic")
    return model, guide, test_split(dataset, binarize, cfg.data_dir or train.get("data_dir"), False, n)


def result_dict(result) -> dict:
    return {
        "mean": result.mean,
        "mc_stderr": result.stderr,
        "data_stderr": result.data_stderr,
        "k": result.k,
        "n": len(result.per_datapoint),
    }
