"""Convolutional image networks: the stride-2 encoder and its transposed-convolution decoder.

The VLAE's generator (:mod:`vaezoo.models.vlae`) decodes with :class:`ConvDecoder`; its inference
network (:mod:`vaezoo.guides.vlae`) reads images with :func:`conv_encoder`, the mirror image.

References:
    - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
"""

from __future__ import annotations

import torch
from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.nets.mlp import activation


class Batched(nn.Module):
    """Apply ``net`` (which wants ``(N, *event)``) to a tensor with any number of leading dimensions."""

    def __init__(self, net: nn.Module, event_dims: int):
        super().__init__()
        self.net, self.event_dims = net, event_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - self.event_dims]
        y = self.net(x.reshape(-1, *x.shape[x.dim() - self.event_dims :]))
        return y.reshape(*lead, *y.shape[1:])


def conv_encoder(x_shape: tuple[int, ...], channels: tuple[int, ...], width: int, act: str) -> nn.Module:
    """x -> [4x4 stride-2 conv -> act] per entry of ``channels`` -> flatten -> Linear(width) -> act."""
    if len(x_shape) != 3:
        raise ConfigError(f"architecture 'conv' needs image data (C, H, W), got x_shape {x_shape}; use 'mlp'")
    layers: list[nn.Module] = []
    c_in = x_shape[0]
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), activation(act)]
        c_in = c_out
    body = nn.Sequential(*layers, nn.Flatten())
    with torch.no_grad():
        n_flat = body(torch.zeros(1, *x_shape)).shape[-1]
    return nn.Sequential(Batched(body, 3), nn.Linear(n_flat, width), activation(act))


class ConvDecoder(nn.Module):
    """h -> Linear -> (C_k, H/2^k, W/2^k) -> k 4x4 stride-2 transposed convs -> logits cropped to x."""

    def __init__(self, width: int, x_shape: tuple[int, ...], channels: tuple[int, ...], act: str):
        super().__init__()
        if len(x_shape) != 3:
            raise ConfigError(f"architecture 'conv' needs image data (C, H, W), got x_shape {x_shape}")
        self.x_shape = x_shape
        k = len(channels)
        self.start = (channels[-1], -(-x_shape[1] // 2**k), -(-x_shape[2] // 2**k))
        self.fc = nn.Sequential(
            nn.Linear(width, self.start[0] * self.start[1] * self.start[2]), activation(act)
        )
        layers: list[nn.Module] = []
        outs = [*reversed(channels[:-1]), x_shape[0]]
        c_in = channels[-1]
        for i, c_out in enumerate(outs):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(activation(act))
            c_in = c_out
        self.deconv = Batched(nn.Sequential(*layers), 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.deconv(self.fc(h).reshape(*h.shape[:-1], *self.start))
        return y[..., : self.x_shape[1], : self.x_shape[2]]


__all__ = ["Batched", "ConvDecoder", "conv_encoder"]
