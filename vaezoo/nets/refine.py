"""An image-to-image refinement network: residual blocks with skip connections, at full resolution.

The multi-stage VAE's second decoder stage (:mod:`vaezoo.models.multistage_vae`) sharpens the coarse
image of its first stage with it. Every block is a residual map, and the whole network adds its
output to its input image (a long skip), so it learns a correction of the coarse image rather than
the image itself; the last convolution starts at zero, so a fresh network is the identity.

References:
    - Cai, Gao & Ji (2017), Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image
      Generation, arXiv:1705.07202.
    - He, Zhang, Ren & Sun (2016), Deep Residual Learning for Image Recognition, CVPR.
"""

from __future__ import annotations

import torch
from torch import nn

from vaezoo.nets.mlp import activation


class ResidualBlock(nn.Module):
    """h + conv3x3(act(conv3x3(act(h)))), keeping channels and resolution."""

    def __init__(self, channels: int, act: str):
        super().__init__()
        self.branch = nn.Sequential(
            activation(act),
            nn.Conv2d(channels, channels, 3, padding=1),
            activation(act),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch(h)


class Refiner(nn.Module):
    """``(..., C, H, W) -> (..., C, H, W)``: y + tail(h_0 + blocks(h_0)), h_0 = conv3x3(y).

    ``blocks`` :class:`ResidualBlock` of ``channels`` channels between a 3x3 convolution into
    feature space and one back to the image's channels; skips around every block, around the stack
    of blocks, and around the whole network. The last convolution is zero-initialized, so a fresh
    refiner returns its input unchanged and training starts from the coarse image.
    """

    def __init__(self, image_channels: int, channels: int, blocks: int, act: str):
        super().__init__()
        self.head = nn.Conv2d(image_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(channels, act) for _ in range(blocks)))
        last = nn.Conv2d(channels, image_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.tail = nn.Sequential(activation(act), last)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        # Convolutions want (N, C, H, W); particle and data dimensions are folded into N and back.
        flat = y.reshape(-1, *y.shape[-3:])
        h = self.head(flat)
        out = flat + self.tail(h + self.blocks(h))
        return out.reshape(y.shape)


__all__ = ["Refiner", "ResidualBlock"]
