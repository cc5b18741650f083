"""Upsampling a latent (a vector or a coarse map) to a feature map of the image's size.

PixelVAE (:mod:`vaezoo.models.pixel_vae`) conditions its PixelCNN on such a map: every pixel reads
the features of z at its own position. Unlike :class:`~vaezoo.nets.conv.ConvDecoder`, which crops
its output to any size, these networks produce exactly ``2**k`` times the coarse side, so the image
side must be a multiple of it (:func:`upsampling_factor` checks, naming the fix).

References:
    - Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville (2017), PixelVAE: A Latent
      Variable Model for Natural Images, ICLR.
"""

from __future__ import annotations

from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.nets.conv import Batched
from vaezoo.nets.mlp import activation


def upsampling_factor(image_shape: tuple[int, ...], channels: tuple[int, ...], who: str) -> int:
    """``2**len(channels)``, after checking that an image of ``image_shape`` (C, H, W) is a multiple of it."""
    if len(image_shape) != 3:
        raise ConfigError(f"{who} needs image data (C, H, W), got x_shape {image_shape}")
    f = 2 ** len(channels)
    _, h, w = image_shape
    if h % f or w % f:
        raise ConfigError(
            f"{who} upsamples by 2^{len(channels)} = {f} (upsample_channels={channels}), so the image's "
            f"height and width must be multiples of {f}; got {h}x{w}. Give fewer upsample_channels "
            f"(each entry doubles the side) or pad/crop the images"
        )
    return f


def deconv_stack(channels_in: int, channels: tuple[int, ...], channels_out: int, act: str) -> nn.Module:
    """``(..., channels_in, h, w) -> (..., channels_out, h 2^k, w 2^k)``, ``k = len(channels)``.

    A 3x3 convolution to ``channels[-1]`` (or straight to ``channels_out`` when ``k = 0``), then k
    4x4 stride-2 transposed convolutions through ``reversed(channels[:-1])`` to ``channels_out``,
    with the activation between layers and none at the end. ``channels`` is listed from the image's
    resolution down, as :class:`~vaezoo.nets.conv.ConvDecoder` lists its own.
    """
    if not channels:
        return Batched(nn.Conv2d(channels_in, channels_out, 3, padding=1), 3)
    layers: list[nn.Module] = [nn.Conv2d(channels_in, channels[-1], 3, padding=1), activation(act)]
    outs = [*reversed(channels[:-1]), channels_out]
    c_in = channels[-1]
    for i, c_out in enumerate(outs):
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        if i < len(outs) - 1:
            layers.append(activation(act))
        c_in = c_out
    return Batched(nn.Sequential(*layers), 3)


def vector_to_map(dim: int, channels: tuple[int, ...], shape: tuple[int, int, int], act: str) -> nn.Module:
    """``(..., dim) -> (..., *shape)``: a dense layer to a coarse map, then :func:`deconv_stack`.

    The coarse map has ``channels[-1]`` channels (``shape[0]`` when ``channels`` is empty) at
    ``shape[1:] / 2**len(channels)``, which must divide exactly (see :func:`upsampling_factor`).
    """
    f = 2 ** len(channels)
    coarse = (channels[-1] if channels else shape[0], shape[1] // f, shape[2] // f)
    return nn.Sequential(
        nn.Linear(dim, coarse[0] * coarse[1] * coarse[2]),
        activation(act),
        nn.Unflatten(-1, coarse),
        deconv_stack(coarse[0], channels, shape[0], act),
    )


__all__ = ["deconv_stack", "upsampling_factor", "vector_to_map"]
