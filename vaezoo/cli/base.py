"""The command registry of the ``vaezoo`` command line, and what several commands share: the one fixed
test split every evaluation uses and the summary of a log-likelihood result."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from vaezoo import checkpoint

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


def subset(data, n: int):
    if n and n < len(data):
        data.images, data.labels = data.images[:n], data.labels[:n]
        if data.binarize == "static":
            data.fixed = data.fixed[:n]
    return data


def test_split(dataset: str, binarize: str, data_dir: str | None, download: bool, size: int):
    from vaezoo import data

    test_binarize = "none" if binarize == "none" else "static"
    return subset(data.load(dataset, "test", test_binarize, data_dir, download, seed=EVAL_SEED), size)


def restore_with_test_set(args: argparse.Namespace, n: int):
    """The checkpoint's model and guide, and the first ``n`` images of the test split it was trained for."""
    model, guide, _, payload = checkpoint.restore(args.checkpoint)
    cfg = payload.get("meta", {}).get("train_config", {})
    dataset, binarize = cfg.get("dataset", "mnist"), cfg.get("binarize", "dynamic")
    return model, guide, test_split(dataset, binarize, args.data_dir or cfg.get("data_dir"), False, n)


def result_dict(result) -> dict:
    return {
        "mean": result.mean,
        "mc_stderr": result.stderr,
        "data_stderr": result.data_stderr,
        "k": result.k,
        "n": len(result.per_datapoint),
    }
