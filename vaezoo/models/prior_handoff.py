"""Conditional priors that a guide computed on its own samples, handed to the model replayed on them.

The Ladder VAE's inference network evaluates the model's p(z_j | z_{j+1}) to merge it with its
bottom-up estimate (Sønderby et al. 2016, eqs. 18-19). The model, replayed on the guide's samples,
needs the very same p(z_j | z_{j+1}) for its log density: the same networks on the same tensors.
Computing it twice doubles the top-down networks' forward and backward passes (and, in training
mode, moves batch-norm running statistics twice). :class:`PriorHandoff` lets the model reuse the
guide's result instead, with the same value and the same autograd graph, so gradients are unchanged.

A result is reused only when all of these still hold, else the model recomputes:

- the conditioning tensors are the *same objects* the guide used (replay passes the guide's sample
  tensors to the model unchanged), and none was modified in place since;
- the network's parameters were not modified since (an optimizer step bumps their versions);
- the network is in the same train/eval mode and autograd is in the same grad mode.

Each result is taken at most once, and only the latest one per layer is kept, so a guide run that
no model run follows holds on to nothing but its own last results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def _stamp(upper: Sequence[torch.Tensor], net: nn.Module) -> tuple:
    return (
        tuple(t._version for t in upper),
        tuple(p._version for p in net.parameters()),
        net.training,
        torch.is_grad_enabled(),
    )


class PriorHandoff:
    """At most one remembered prior per layer, keyed by the identity of its conditioning tensors."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[tuple[torch.Tensor, ...], tuple, Any]] = {}

    def put(self, j: int, upper: Sequence[torch.Tensor], net: nn.Module, value: Any) -> None:
        """Remember ``value`` = ``net``'s prior of layer ``j`` computed from ``upper``."""
        self._entries[j] = (tuple(upper), _stamp(upper, net), value)

    def take(self, j: int, upper: Sequence[torch.Tensor], net: nn.Module) -> Any | None:
        """The value put for exactly these ``upper`` tensors and this state of ``net``, or ``None``."""
        entry = self._entries.pop(j, None)
        if entry is None:
            return None
        tensors, stamp, value = entry
        same = len(tensors) == len(upper) and all(a is b for a, b in zip(tensors, upper, strict=False))
        return value if same and stamp == _stamp(upper, net) else None

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["PriorHandoff"]
