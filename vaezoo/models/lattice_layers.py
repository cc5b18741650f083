"""Z2-odd lattice networks and the lattice distributions of the block-spin hierarchy.

Building blocks shared by :mod:`vaezoo.models.block_spin` (the model) and
:mod:`vaezoo.guides.block_spin` (its guides):

* :class:`OddConv`: a bias-free circular convolution whose output channels are multiplied by gains
  ``g_c(K)``, a tiny function of the coupling ``K = J / T``. Bias-free convolutions, per-channel gains
  and ``tanh`` are all odd in the lattice input, so any stack of them is: flipping every spin (and
  every block spin) flips every local field. This is how Z2 symmetry holds by construction.
* :class:`CheckerboardLattice`: a distribution over an ``m x m`` lattice of {0, 1} occupations
  (spins ``s = 2v - 1``) in two autoregressive stages. Sublattice A (``(i + j)`` even) is factorized
  given a context; sublattice B is factorized given the A values. Every nearest-neighbour bond joins
  an A site to a B site, so stage B can express the exact heat-bath conditional
  ``p(s_i = +1 | s_A) = sigma(2 K sum_nbr s_j)`` (e.g. by its linear skip path), the nearest-neighbour
  correlation a factorized Bernoulli decoder cannot represent.
* :class:`SymmetricLatticeCategorical`: a full categorical over the ``2^M`` configurations of a tiny
  top lattice, with logits averaged over ``c`` and ``-c`` so ``p(c) = p(-c)`` exactly.

Probabilities use the Bernoulli convention ``p(s_i = +1) = sigma(2 h_i)`` with local field ``h_i``, so
``log p(s_i) = -softplus(-2 h_i s_i)``, which is computed identically for ``(s, h)`` and ``(-s, -h)``.

References:
    - Kadanoff (1966), Scaling laws for Ising models near T_c, Physics 2, 263 (block spins).
    - Glauber (1963), Time-dependent statistics of the Ising model, J. Math. Phys. 4, 294 (heat bath).
    - Larochelle & Murray (2011), The Neural Autoregressive Distribution Estimator, AISTATS, and
      Reed et al. (2017), Parallel Multiscale Autoregressive Density Estimation, ICML (grouped,
      coarse-to-fine autoregressive factorizations like the two-stage checkerboard).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch import nn

from vaezoo.ising.exact import BETA_C


def sublattice_a(m: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean ``(m, m)`` mask of sublattice A, the sites with ``i + j`` even."""
    idx = torch.arange(m, device=None if like is None else like.device)
    return (idx[:, None] + idx[None, :]) % 2 == 0


def apply_2d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a 2-d conv module on ``x`` of shape ``(*lead, C, m, m)`` with any number of leading dims."""
    lead = x.shape[:-3]
    y = module(x.reshape(-1, *x.shape[-3:]))
    return y.reshape(*lead, *y.shape[-3:])


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling ``(..., m, m) -> (..., 2m, 2m)``: each block spin fills its block."""
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


class GainNet(nn.Module):
    """Per-channel gains g_c(K) = K (b_c + MLP(K / K_c)_c), with b = 1 and the MLP's output zero at init.

    The factor K makes every field vanish at infinite temperature, and with the MLP at zero a gain is
    exactly K, the scale of the Boltzmann local field ``K sum_nbr s_j``. A function of K alone, so it
    never breaks the oddness of the lattice networks it scales.
    """

    def __init__(self, channels: int, hidden: int = 8):
        super().__init__()
        self.bias = nn.Parameter(torch.ones(channels))
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, K: torch.Tensor) -> torch.Tensor:
        """``(*b,)`` couplings to ``(*b, channels)`` gains."""
        K = K.unsqueeze(-1)
        return K * (self.bias + self.mlp(K / BETA_C))


class OddConv(nn.Module):
    """y_c = g_c(K) * (W * x)_c: a bias-free circular convolution times K-dependent channel gains.

    ``stride=2`` with ``kernel=2`` maps each 2x2 block to one site (block-spin coarse-graining);
    ``stride=1`` uses circular padding (the torus) and an odd kernel size.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, gain_hidden: int = 8):
        super().__init__()
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(
            c_in, c_out, kernel, stride=stride, padding=padding, padding_mode="circular", bias=False
        )
        self.gain = GainNet(c_out, gain_hidden)

    def forward(self, x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """``x``: ``(*lead, c_in, m, m)``; ``K``: broadcastable to ``lead``."""
        return apply_2d(self.conv, x) * self.gain(K)[..., :, None, None]


class OddStack(nn.Module):
    """``depth`` OddConv layers, each followed by tanh: an odd feature extractor ``c_in -> width``."""

    def __init__(self, c_in: int, width: int, depth: int, kernel: int = 3, gain_hidden: int = 8):
        super().__init__()
        sizes = [c_in] + [width] * depth
        self.layers = nn.ModuleList(
            OddConv(a, b, kernel, gain_hidden=gain_hidden) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x, K))
        return x


def spin_log_prob(spins: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """log p(s_i) = log sigma(2 h_i s_i), elementwise, for p(s_i = +1) = sigma(2 h_i)."""
    return -F.softplus(-2.0 * field * spins)


def draw_spins(field: torch.Tensor) -> torch.Tensor:
    """Independent spins ±1 with p(+1) = sigma(2 h)."""
    return torch.where(torch.rand_like(field) < torch.sigmoid(2.0 * field), 1.0, -1.0).to(field.dtype)


class CheckerboardLattice(TorchDistribution):
    """p(v) = prod_{i in A} p(s_i | h^A_i) prod_{i in B} p(s_i | h^B_i(s_A)),   s = 2v - 1 in {-1, +1}.

    :param field_a: ``(*batch, m, m)`` local fields of the A sites (entries on B sites are ignored).
    :param stage_b: maps the spins with B sites zeroed, ``(*b, m, m)`` for any ``*b`` broadcastable
        with ``*batch``, to the local fields ``(*b', m, m)`` of the B sites (entries on A ignored).
        It carries the context (coarser level, K) in its closure.

    Values are {0, 1} occupations (Bernoulli convention, so the observed site of a model is a
    Bernoulli-type site); ``log_prob`` broadcasts values with extra leading dims against the batch
    shape, as the particle plate needs; ``expand`` is Pyro's :class:`ExpandedDistribution`.
    Normalized by construction: each stage is a product of normalized Bernoullis. For odd ``m`` the
    two-colouring cannot close around the torus, so a few bonds join sites of the same sublattice; the
    distribution stays normalized but stage B no longer sees all neighbours there. (In the block-spin
    model only a top level with more than 4 sites can have odd side.)
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 2)
    has_rsample = False

    def __init__(
        self,
        field_a: torch.Tensor,
        stage_b: Callable[[torch.Tensor], torch.Tensor],
        validate_args: bool | None = None,
    ):
        self.field_a = field_a
        self.stage_b = stage_b
        self.mask_a = sublattice_a(field_a.shape[-1], field_a)
        super().__init__(field_a.shape[:-2], field_a.shape[-2:], validate_args=validate_args)

    def fields(self, spins: torch.Tensor) -> torch.Tensor:
        """Local fields of every site of the lattice ``spins`` (A from the context, B from ``spins_A``)."""
        field_b = self.stage_b(spins * self.mask_a)
        return torch.where(self.mask_a, self.field_a, field_b)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(self.batch_shape, value.shape[:-2]) + self.event_shape
        spins = (2 * value - 1).to(self.field_a.dtype).expand(shape)
        return spin_log_prob(spins, self.fields(spins)).sum((-2, -1))

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        spins_a = draw_spins(self.field_a.expand(shape)) * self.mask_a
        spins_b = draw_spins(self.stage_b(spins_a).expand(shape))
        spins = torch.where(self.mask_a, spins_a, spins_b)
        return (spins + 1) / 2


class SymmetricLatticeCategorical(TorchDistribution):
    """p(c) ∝ exp((theta_c + theta_{-c}) / 2) over all 2^M configurations of an ``m x m`` lattice.

    Configuration index ``i`` has occupation ``v_k = bit_k(i)`` at site ``k`` (row-major), the order of
    :func:`vaezoo.ising.exact.enumerate_states`; the flip ``-c`` has index ``2^M - 1 - i``, so the
    symmetrization is an average with the reversed logits.

    :param raw_logits: ``(*batch, 2^(m^2))``.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 2)
    has_rsample = False

    def __init__(self, raw_logits: torch.Tensor, side: int, validate_args: bool | None = None):
        if raw_logits.shape[-1] != 2 ** (side * side):
            raise ValueError(
                f"need 2^{side * side} logits for a {side}x{side} lattice, got {raw_logits.shape[-1]}"
            )
        sym = 0.5 * (raw_logits + raw_logits.flip(-1))
        self.logits = sym - sym.logsumexp(-1, keepdim=True)
        self.side = side
        self.weights = (2 ** torch.arange(side * side, device=raw_logits.device)).reshape(side, side)
        super().__init__(raw_logits.shape[:-1], torch.Size((side, side)), validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        index = (value.long() * self.weights).sum((-2, -1))
        shape = torch.broadcast_shapes(self.batch_shape, index.shape)
        logits = self.logits.expand(*shape, self.logits.shape[-1])
        return logits.gather(-1, index.expand(shape).unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        probs = self.logits.exp().expand(*shape, self.logits.shape[-1]).reshape(-1, self.logits.shape[-1])
        index = torch.multinomial(probs, 1).reshape(shape)
        bits = (index[..., None, None] // self.weights) % 2
        return bits.to(self.logits.dtype)

    def entropy(self) -> torch.Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)


def block_sum(spins: torch.Tensor) -> torch.Tensor:
    """Sum of the spins of each 2x2 block, ``(..., 2m, 2m) -> (..., m, m)``."""
    *lead, n, _ = spins.shape
    return spins.reshape(*lead, n // 2, 2, n // 2, 2).sum((-3, -1))


LOG2 = math.log(2.0)
