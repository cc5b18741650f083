"""The pieces every hierarchy's networks are made of: rungs, Normal heads, batch norm over features.

Shared by the top-down models (:mod:`vaezoo.models.hvae`, :mod:`vaezoo.models.ladder`,
:mod:`vaezoo.models.vlae`) and their guides, so a guide's networks are built exactly as its model's.
All of them accept any number of leading batch dimensions (the particle plate adds them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.nets.mlp import activation


class FeatureBatchNorm(nn.BatchNorm1d):
    """Batch norm over the last dimension of a tensor with any number of leading batch dimensions.

    The particle plate of IWAE and importance sampling adds leading dimensions that
    :class:`torch.nn.BatchNorm1d` would read as channels; here they are folded into the batch, so
    in training mode the statistics are taken over particles and datapoints together. A single row
    (say the last, one-image batch of an epoch) has no batch statistics; it is normalized with the
    running averages, as in eval mode, instead of raising.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if self.training and flat.shape[0] == 1:
            out = F.batch_norm(
                flat, self.running_mean, self.running_var, self.weight, self.bias, eps=self.eps
            )
        else:
            out = super().forward(flat)
        return out.reshape(x.shape)


def rung(n_in: int, width: int, layers: int, act: str, batch_norm: bool) -> nn.Sequential:
    """``layers`` blocks of Linear -> (batch norm) -> activation, ``n_in -> width -> ... -> width``.

    The deterministic part of one rung of a hierarchy (Sønderby et al. 2016 use two such layers).
    """
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks.append(nn.Linear(n_in if i == 0 else width, width))
        if batch_norm:
            blocks.append(FeatureBatchNorm(width))
        blocks.append(activation(act))
    return nn.Sequential(*blocks)


def cat_features(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting the leading (batch/particle) dimensions."""
    lead = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*lead, t.shape[-1]) for t in tensors], dim=-1)


def per_layer(values: Sequence[int], n: int, name: str, who: str) -> list[int]:
    """``values`` as one entry per layer: a single value is repeated, any other length must be ``n``."""
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise ConfigError(
            f"{who} has {n} latent layers but {name}={tuple(values)} has {len(values)} entries; "
            f"give one {name} per layer (bottom first) or a single value for all"
        )
    return list(values)


def normal_head(out: torch.Tensor, min_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a linear layer's output into (loc, scale), scale = softplus(.) + min_scale."""
    loc, raw = out.chunk(2, dim=-1)
    return loc, F.softplus(raw) + min_scale


__all__ = ["FeatureBatchNorm", "cat_features", "normal_head", "per_layer", "rung"]
