"""A masked autoregressive network (MADE) with an unmasked context input, for autoregressive flows."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import torch
from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.nets.mlp import activation


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask`` of shape ``(out, in)``."""

    def __init__(self, mask: torch.Tensor, bias: bool = True):
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Outputs ``(y_1, ..., y_n)``, each ``(..., D)``, with ``y_j[i]`` a function of z_<i and h only.

    "Before" is the ``order`` given: ``order[i]`` is the position of coordinate i (a permutation
    of 0..D-1), so output i sees exactly the coordinates of smaller position and the whole
    context h. Masks follow Germain et al. (2015): input coordinate i has degree order[i] + 1,
    hidden unit k of every layer degree k mod D, output i degree order[i] + 1; a connection
    exists from degree a to hidden degree b when b >= a, and to an output of degree c when c > b.
    Hidden units of degree 0 see only the context; they carry h to every output, including the
    first, which sees no coordinate of z. The context enters the first hidden layer unmasked.

    :param dim: D, the number of autoregressive coordinates.
    :param context: size of the context h (0: none).
    :param hidden: widths of the hidden layers (at least one).
    :param order: the permutation; default 0..D-1.
    :param n_out: number of outputs per coordinate.
    :param act: activation name (see :data:`~vaezoo.nets.mlp.ACTIVATIONS`).

    References:
        - Germain, Gregor, Murray & Larochelle (2015), MADE: Masked Autoencoder for Distribution
          Estimation, ICML.
        - Kingma et al. (2016), Improved Variational Inference with Inverse Autoregressive Flow,
          NIPS (the context input h).
    """

    def __init__(
        self,
        dim: int,
        context: int,
        hidden: Sequence[int],
        order: Sequence[int] | None = None,
        n_out: int = 2,
        act: str = "elu",
    ):
        super().__init__()
        if dim < 1 or not hidden or min(hidden) < 1:
            raise ConfigError(f"MADE needs dim >= 1 and at least one hidden layer of width >= 1, got "
                              f"dim={dim}, hidden={tuple(hidden)}")
        order_t = torch.arange(dim) if order is None else torch.as_tensor(list(order))
        if sorted(order_t.tolist()) != list(range(dim)):
            raise ConfigError(f"MADE order must be a permutation of 0..{dim - 1}, got {order_t.tolist()}")
        self.dim, self.n_out = dim, n_out
        self.register_buffer("order", order_t)
        degree_in = order_t + 1
        layers: list[nn.Module] = []
        previous = degree_in
        for width in hidden:
            degree = torch.arange(width) % dim
            layers.append(MaskedLinear((degree[:, None] >= previous[None, :]).float()))
            previous = degree
        self.hidden = nn.ModuleList(layers)
        self.context = nn.Linear(context, hidden[0], bias=False) if context else None
        self.act = activation(act)
        out_degree = degree_in.repeat(n_out)
        self.out = MaskedLinear((out_degree[:, None] > previous[None, :]).float())

    def forward(self, z: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        a = self.hidden[0](z)
        if self.context is not None:
            a = a + self.context(h)
        a = self.act(a)
        for layer in islice(self.hidden, 1, None):  # slicing a ModuleList would build a new one per call
            a = self.act(layer(a))
        return self.out(a).unflatten(-1, (self.n_out, self.dim)).unbind(-2)


__all__ = ["MADE", "MaskedLinear"]
