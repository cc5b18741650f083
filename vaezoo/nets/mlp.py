"""Multilayer perceptrons and the named activations every network builder uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from vaezoo.errors import ConfigError

#: The names a config may give for an activation (the keys of :data:`ACTIVATIONS`).
Activation = Literal["tanh", "relu", "elu", "leaky_relu", "softplus"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def mlp(sizes: Sequence[int], act: str, final_act: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them.

    Works on any number of leading batch dimensions (``nn.Linear`` does), which the particle plates
    of IWAE and importance sampling rely on.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_act:
            layers.append(activation(act))
    return nn.Sequential(*layers)
