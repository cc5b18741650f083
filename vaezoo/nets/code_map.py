"""Fully convolutional networks between an image and a map of code vectors (the VQ-VAE's encoder and decoder).

The encoder halves the image's height and width ``downsample`` times (4x4 stride-2 convolutions), so a
28x28 MNIST digit becomes a 7x7 map with ``downsample=2``; the decoder mirrors it with transposed
convolutions. Both accept any number of leading (particle) dimensions.

References:
    - van den Oord, Vinyals & Kavukcuoglu (2017), Neural Discrete Representation Learning, NIPS.
"""

from __future__ import annotations

from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.nets.conv import Batched


def map_shape(x_shape: tuple[int, ...], downsample: int) -> tuple[int, int]:
    """(h, w) of the code map of images ``x_shape = (C, H, W)``; :class:`ConfigError` unless
    H and W are multiples of ``2 ** downsample``."""
    if len(x_shape) != 3:
        raise ConfigError(f"a code map needs image data (C, H, W), got x_shape {x_shape}")
    step = 2**downsample
    if x_shape[1] % step or x_shape[2] % step:
        raise ConfigError(f"downsample={downsample} halves H and W {downsample} times, so they must be "
                          f"multiples of {step}; got {x_shape[1]}x{x_shape[2]}: choose a smaller downsample")
    return x_shape[1] // step, x_shape[2] // step


def map_encoder(x_shape: tuple[int, ...], channels: int, code_dim: int, downsample: int) -> nn.Module:
    """x ``(..., C, H, W)`` -> [4x4 stride-2 conv, ReLU] x downsample -> 3x3 conv, ReLU -> 1x1 conv
    -> z_e ``(..., code_dim, H / 2^d, W / 2^d)``."""
    map_shape(x_shape, downsample)
    layers: list[nn.Module] = []
    c_in = x_shape[0]
    for _ in range(downsample):
        layers += [nn.Conv2d(c_in, channels, 4, stride=2, padding=1), nn.ReLU()]
        c_in = channels
    layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, code_dim, 1)]
    return Batched(nn.Sequential(*layers), 3)


def map_decoder(x_shape: tuple[int, ...], channels: int, code_dim: int, downsample: int) -> nn.Module:
    """z ``(..., code_dim, h, w)`` -> 3x3 conv, ReLU -> [4x4 stride-2 transposed conv, ReLU] x
    downsample (no ReLU after the last, which has C channels) -> ``(..., C, H, W)``."""
    map_shape(x_shape, downsample)
    layers: list[nn.Module] = [nn.Conv2d(code_dim, channels, 3, padding=1), nn.ReLU()]
    for i in range(downsample):
        last = i == downsample - 1
        layers.append(nn.ConvTranspose2d(channels, x_shape[0] if last else channels, 4, stride=2, padding=1))
        if not last:
            layers.append(nn.ReLU())
    if downsample == 0:
        layers.append(nn.Conv2d(channels, x_shape[0], 1))
    return Batched(nn.Sequential(*layers), 3)


__all__ = ["map_decoder", "map_encoder", "map_shape"]
