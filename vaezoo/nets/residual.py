"""The residual cells of NVAE: squeeze-and-excitation, encoder cells and depthwise-separable generative cells.

Both cells map ``(N, C_in, H, W)`` to ``(N, C_out, H', W')`` as ``skip(x) + scale * branch(x)``; the
branch ends in squeeze-and-excitation. They resample at most by a factor of two: an encoder cell can
halve the resolution (its first convolution has stride 2), a generative cell can double it (nearest
upsampling first). With ``C_in == C_out`` and no resampling the skip is the identity, else a 1x1
convolution (after the resampling), so every cell is a residual map.

References:
    - Vahdat & Kautz (2020), NVAE: A Deep Hierarchical Variational Autoencoder, NeurIPS (Fig. 3).
    - Hu, Shen & Sun (2018), Squeeze-and-Excitation Networks, CVPR.
    - Sandler, Howard, Zhu, Zhmoginov & Chen (2018), MobileNetV2: Inverted Residuals and Linear
      Bottlenecks, CVPR (the expanded depthwise-separable block of the generative cell).
    - Ramachandran, Zoph & Le (2017), Searching for Activation Functions (Swish).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import ConfigError


class SqueezeExcitation(nn.Module):
    """x * sigmoid(W_2 relu(W_1 mean_hw(x))): a per-channel gate computed from the whole image.

    The hidden width is ``max(channels // reduction, min_hidden)`` (Hu et al. 2018 use reduction 16;
    the floor keeps narrow cells from a one-unit bottleneck).
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 4):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((-2, -1))))))
        return x * gate[..., None, None]


def _check(c_in: int, c_out: int, resample: int, allowed: tuple[int, ...], who: str) -> None:
    if min(c_in, c_out) < 1:
        raise ConfigError(f"{who} needs positive channel counts, got {c_in} -> {c_out}")
    if resample not in allowed:
        raise ConfigError(f"{who} resamples by a factor in {allowed}, got {resample}")


def _bn(channels: int, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=momentum)


class ResidualCell(nn.Module):
    """skip(x) + branch_scale * branch(x); subclasses build :attr:`branch` and :attr:`skip`."""

    branch: nn.Module
    skip: nn.Module
    branch_scale: float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.branch_scale * self.branch(x)


class EncoderCell(ResidualCell):
    """The bottom-up residual cell: BN - Swish - conv3x3 - BN - Swish - conv3x3 - SE (NVAE Fig. 3b).

    ``stride=2`` halves the resolution in the first convolution; the skip is then a stride-2 1x1
    convolution. ``branch_scale`` multiplies the branch (NVAE's implementation uses 0.1, so a fresh
    deep stack starts close to the identity).
    """

    def __init__(
        self, c_in: int, c_out: int, stride: int = 1, momentum: float = 0.1, branch_scale: float = 0.1
    ):
        super().__init__()
        _check(c_in, c_out, stride, (1, 2), "EncoderCell")
        self.branch_scale = branch_scale
        self.branch = nn.Sequential(
            _bn(c_in, momentum),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
            _bn(c_out, momentum),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            SqueezeExcitation(c_out),
        )
        same = stride == 1 and c_in == c_out
        self.skip = nn.Identity() if same else nn.Conv2d(c_in, c_out, 1, stride=stride)


class GenerativeCell(ResidualCell):
    """The top-down residual cell (NVAE Fig. 3a), an inverted residual block with squeeze-and-excitation:

    BN - conv1x1 (C_out -> expansion * C_out) - BN - Swish - depthwise conv5x5 - BN - Swish -
    conv1x1 (-> C_out) - BN - SE.

    The depthwise 5x5 convolution widens the receptive field at a cost linear in the channels; the
    1x1 expansion gives it channels to work on. ``upsample=2`` first doubles the resolution
    (nearest neighbour) and maps ``c_in`` to ``c_out`` with a 1x1 convolution; that is the skip,
    and the branch starts from it.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        upsample: int = 1,
        expansion: int = 6,
        kernel: int = 5,
        momentum: float = 0.1,
        branch_scale: float = 0.1,
    ):
        super().__init__()
        _check(c_in, c_out, upsample, (1, 2), "GenerativeCell")
        if expansion < 1 or kernel < 1 or kernel % 2 == 0:
            raise ConfigError(
                f"GenerativeCell needs expansion >= 1 and an odd kernel, got expansion {expansion}, "
                f"kernel {kernel}"
            )
        self.branch_scale = branch_scale
        wide = expansion * c_out
        entry: list[nn.Module] = []
        if upsample == 2 or c_in != c_out:
            entry = [nn.Upsample(scale_factor=upsample, mode="nearest"), nn.Conv2d(c_in, c_out, 1)]
        self.skip = nn.Sequential(*entry) if entry else nn.Identity()
        self.branch = nn.Sequential(
            _bn(c_out, momentum),
            nn.Conv2d(c_out, wide, 1),
            _bn(wide, momentum),
            nn.SiLU(),
            nn.Conv2d(wide, wide, kernel, padding=kernel // 2, groups=wide),
            _bn(wide, momentum),
            nn.SiLU(),
            nn.Conv2d(wide, c_out, 1),
            _bn(c_out, momentum),
            SqueezeExcitation(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entered = self.skip(x)
        # The branch starts from the resampled input, so the resampling is computed once.
        return entered + self.branch_scale * self.branch(entered)


__all__ = ["EncoderCell", "GenerativeCell", "ResidualCell", "SqueezeExcitation"]
