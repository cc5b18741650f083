"""A categorical distribution over maps of codebook vectors: the VQ-VAE's prior p(z)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro.distributions import TorchDistribution, constraints

#: codes ``(..., h, w)`` -> logits ``(..., K, h, w)``, the logits at each position a function of the
#: codes before it in raster order only (an autoregressive network such as a PixelCNN).
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def nearest_codes(vectors: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest code of every position of the map ``z`` ``(..., D, h, w)``, and the largest
    absolute coordinate difference to it, both ``(..., h, w)``."""
    v = z.detach().movedim(-3, -1)
    d = v.pow(2).sum(-1, keepdim=True) - 2 * v @ vectors.T + vectors.pow(2).sum(-1)
    codes = d.argmin(-1)
    gap = (v - vectors.detach()[codes]).abs().amax(-1)
    return codes, gap


class _OnCodebook(constraints.Constraint):
    """Maps whose every position is one of the code vectors (up to float rounding)."""

    is_discrete = True
    event_dim = 3

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.vectors = vectors

    def check(self, value: torch.Tensor) -> torch.Tensor:
        # A straight-through value z_e + (e - z_e) equals e only up to rounding of order eps |z_e|.
        _, gap = nearest_codes(self.vectors, value)
        tol = 1e-4 * (1 + value.detach().movedim(-3, -1).abs().amax(-1))
        return (gap <= tol).all(-1).all(-1)


class CodeMap(TorchDistribution):
    """z = e_c with c an ``h x w`` map of code indices, ``c ~ Uniform{1..K}^{hw}`` or autoregressive.

    Values are maps ``(..., D, h, w)`` of codebook vectors ``vectors[c]``; the event is the whole map.
    With ``logits_fn=None`` every map has probability ``K^-(hw)``; otherwise
    ``log p(c) = sum_i log softmax(logits_fn(c))[c_i, i]``, the logits at position i depending on the
    positions before it only (then ``p`` sums to 1 over the K^(hw) maps, and :meth:`sample` draws the
    positions one by one in raster order). :meth:`log_prob` finds each position's code as the nearest
    codebook vector (with validation on, a value off the codebook is refused).

    :param vectors: the codebook, ``(K, D)``.
    :param map_shape: ``(h, w)``.
    :param batch_shape: the batch shape (the data plate's size).
    :param logits_fn: the autoregressive prior's logits, or None for the uniform prior.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, vectors: torch.Tensor, map_shape: tuple[int, int], batch_shape: tuple[int, ...] = (),
                 logits_fn: LogitsFn | None = None, validate_args: bool | None = None):
        self.vectors, self.map_shape, self.logits_fn = vectors, tuple(map_shape), logits_fn
        event = torch.Size((vectors.shape[1], *self.map_shape))
        super().__init__(torch.Size(batch_shape), event, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return _OnCodebook(self.vectors)

    def expand(self, batch_shape, _instance=None) -> CodeMap:
        return CodeMap(self.vectors, self.map_shape, tuple(batch_shape), self.logits_fn,
                       validate_args=self._validate_args)

    def codes(self, value: torch.Tensor) -> torch.Tensor:
        """The code map ``(..., h, w)`` of a value ``(..., D, h, w)``."""
        return nearest_codes(self.vectors, value)[0]

    def code_log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) of code maps ``(..., h, w)``, shape ``(...)``."""
        if self.logits_fn is None:
            n = math.prod(self.map_shape)
            log_k = math.log(len(self.vectors))
            return codes.new_full(codes.shape[:-2], -n * log_k, dtype=self.vectors.dtype)
        logits = self.logits_fn(codes).log_softmax(-3)
        return logits.gather(-3, codes.unsqueeze(-3)).squeeze(-3).sum((-2, -1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        lp = self.code_log_prob(self.codes(value))
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    @torch.no_grad()
    def sample_codes(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Code maps ``(*sample_shape, *batch_shape, h, w)``."""
        shape = torch.Size(sample_shape) + self.batch_shape + torch.Size(self.map_shape)
        codes = torch.randint(len(self.vectors), shape, device=self.vectors.device)
        if self.logits_fn is None:
            return codes
        h, w = self.map_shape
        for i in range(h):
            for j in range(w):
                logits = self.logits_fn(codes)[..., :, i, j]
                codes[..., i, j] = torch.distributions.Categorical(logits=logits).sample()
        return codes

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.vectors[self.sample_codes(sample_shape)].movedim(-1, -3)


__all__ = ["CodeMap", "LogitsFn", "nearest_codes"]
