"""Z2-odd lattice networks, shared by the block-spin model and its guides.

:class:`OddConv` is a bias-free circular convolution whose output channels are multiplied by gains
``g_c(K)``, a tiny function of the coupling ``K = J / T``. Bias-free convolutions, per-channel gains
and ``tanh`` are all odd in the lattice input, so any stack of them is: flipping every spin (and
every block spin) flips every local field. This is how the block-spin family
(:mod:`vaezoo.models.block_spin`, :mod:`vaezoo.guides.block_spin`) holds Z2 symmetry by construction.

The gains read K relative to a reference coupling ``k_ref`` that the caller passes (the block-spin
family passes the critical coupling K_c): the physics constant belongs to :mod:`vaezoo.ising`, which
this ground floor does not import.

References:
    - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263 (block spins).
"""

from __future__ import annotations

import torch
from torch import nn


def apply_2d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a 2-d conv module on ``x`` of shape ``(*lead, C, m, m)`` with any number of leading dims."""
    lead = x.shape[:-3]
    y = module(x.reshape(-1, *x.shape[-3:]))
    return y.reshape(*lead, *y.shape[-3:])


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling ``(..., m, m) -> (..., 2m, 2m)``: each block spin fills its block."""
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


class GainNet(nn.Module):
    """Per-channel gains g_c(K) = K (b_c + MLP(K / k_ref)_c), with b = 1 and the MLP's output zero at init.

    The factor K makes every field vanish at infinite temperature, and with the MLP at zero a gain is
    exactly K, the scale of the Boltzmann local field ``K sum_nbr s_j``. A function of K alone, so it
    never breaks the oddness of the lattice networks it scales. The MLP reads ``K / k_ref`` so that
    its input is of order one over the couplings of interest.
    """

    def __init__(self, channels: int, hidden: int = 8, *, k_ref: float):
        super().__init__()
        self.k_ref = k_ref
        self.bias = nn.Parameter(torch.ones(channels))
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, K: torch.Tensor) -> torch.Tensor:
        """``(*b,)`` couplings to ``(*b, channels)`` gains."""
        K = K.unsqueeze(-1)
        return K * (self.bias + self.mlp(K / self.k_ref))


class OddConv(nn.Module):
    """y_c = g_c(K) * (W * x)_c: a bias-free circular convolution times K-dependent channel gains.

    ``stride=2`` with ``kernel=2`` maps each 2x2 block to one site (block-spin coarse-graining);
    ``stride=1`` uses circular padding (the torus) and an odd kernel size.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, gain_hidden: int = 8, *, k_ref: float
    ):
        super().__init__()
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(
            c_in, c_out, kernel, stride=stride, padding=padding, padding_mode="circular", bias=False
        )
        self.gain = GainNet(c_out, gain_hidden, k_ref=k_ref)

    def forward(self, x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """``x``: ``(*lead, c_in, m, m)``; ``K``: broadcastable to ``lead``."""
        return apply_2d(self.conv, x) * self.gain(K)[..., :, None, None]


class OddStack(nn.Module):
    """``depth`` OddConv layers, each followed by tanh: an odd feature extractor ``c_in -> width``."""

    def __init__(
        self, c_in: int, width: int, depth: int, kernel: int = 3, gain_hidden: int = 8, *, k_ref: float
    ):
        super().__init__()
        sizes = [c_in] + [width] * depth
        self.layers = nn.ModuleList(
            OddConv(a, b, kernel, gain_hidden=gain_hidden, k_ref=k_ref)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x, K))
        return x


class OddBottomUp(nn.Module):
    """One rung of a deterministic bottom-up lattice pass, with a Gaussian read-out at the coarser side.

    From ``finer`` ``(*lead, c_in, m, m)``::

        d     = tanh(down(OddStack(finer)))                    (*lead, width, m/2, m/2), odd
        mu    = head(d) + skip(finer)                          odd; skip: a learned 2x2 block sum
        sigma = softplus(conv1x1(d^2) + c(K)) + min_scale      even

    so a Normal(mu, sigma) read-out flips its mean with the spins and keeps its spread. The ladder
    and VLAE guides of the lattice models stack these rungs.
    """

    def __init__(
        self,
        c_in: int,
        width: int,
        depth: int,
        gain_hidden: int = 8,
        min_scale: float = 1e-3,
        *,
        k_ref: float,
    ):
        super().__init__()
        g = {"gain_hidden": gain_hidden, "k_ref": k_ref}
        self.features = OddStack(c_in, width, depth, **g)
        self.down = OddConv(width, width, kernel=2, stride=2, **g)
        self.head = OddConv(width, 1, **g)
        self.skip = OddConv(c_in, 1, kernel=2, stride=2, **g)
        self.scale_head = nn.Conv2d(width, 1, 1)
        self.scale_gain = GainNet(1, gain_hidden, k_ref=k_ref)
        self.min_scale = min_scale

    def forward(
        self, finer: torch.Tensor, K: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(d, mu, sigma)``: coarser features, and the read-out's ``(*lead, m/2, m/2)`` mean and scale."""
        d = torch.tanh(self.down(self.features(finer, K), K))
        mu = (self.head(d, K) + self.skip(finer, K)).squeeze(-3)
        even = apply_2d(self.scale_head, d.square()).squeeze(-3)
        k_ref = self.scale_gain.k_ref
        sigma = torch.nn.functional.softplus(even + self.scale_gain(K / k_ref)[..., None]) + self.min_scale
        return d, mu, sigma


__all__ = ["GainNet", "OddBottomUp", "OddConv", "OddStack", "apply_2d", "upsample"]
