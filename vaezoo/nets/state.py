"""Temporary states of a network: evaluation mode, and frozen parameters and buffers."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode (batch norm uses running statistics), restoring their modes after."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


@contextlib.contextmanager
def frozen(module: torch.nn.Module, keep: torch.nn.Module | None = None) -> Iterator[None]:
    """Hold ``module`` fixed in the body: no gradient to its parameters (except those shared with
    ``keep``), and its buffers (e.g. batch-norm running averages) restored on exit.

    Used where a fixed model is evaluated many times: refinement steps, MCMC potentials, local
    optimization; restoring the buffers makes those evaluations free of side effects. Gradient flags
    are restored too, including those of parameters the caller froze on purpose.
    """
    kept = {id(p) for p in keep.parameters()} if keep is not None else set()
    params = [p for p in module.parameters() if p.requires_grad and id(p) not in kept]
    # The body works on copies of the buffers, so the originals need no in-place restore (which
    # would invalidate graphs that saved them).
    buffers = [(m, name, b) for m in module.modules() for name, b in m._buffers.items() if b is not None]
    try:
        for m, name, b in buffers:
            m._buffers[name] = b.clone()
        for p in params:
            p.requires_grad_(False)
        with warnings.catch_warnings():
            # pyro.module notes that frozen parameters skip the param store, which is the intent here.
            warnings.filterwarnings(
                "ignore", message=".*not registered in the param store because requires_grad"
            )
            yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, name, b in buffers:
            m._buffers[name] = b
