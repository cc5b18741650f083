"""A vector-quantization codebook: nearest-code assignment, EMA updates and dead-code restarts.

Shared by the VQ-VAE's model (which decodes and scores code vectors) and its guide (which quantizes
encoder outputs against the same codebook); :class:`Quantization` is the record a quantizing guide
leaves on its sample site for objectives to read (``infer[QUANTIZATION]``).

References:
    - van den Oord, Vinyals & Kavukcuoglu (2017), Neural Discrete Representation Learning, NIPS
      (section 3.2 and appendix A.1: the losses and the exponential-moving-average update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import ConfigError

#: Key of a guide site's ``infer`` dict under which a quantizing guide leaves its :class:`Quantization`.
QUANTIZATION = "quantization"

CodebookUpdate = Literal["loss", "ema"]


@dataclass(frozen=True)
class Quantization:
    """One quantization of an encoder output map ``z_e`` of shape ``(..., D, h, w)``.

    :param z_e: the encoder output (with its graph).
    :param codes: index of the nearest code at every position, ``(..., h, w)``.
    :param z_q: the code vectors ``e_codes``, ``(..., D, h, w)`` (with a graph to the codebook when the
        codebook is trained by loss).
    :param learn_codebook: whether the codebook is trained by the codebook loss (else by EMA).
    """

    z_e: torch.Tensor
    codes: torch.Tensor
    z_q: torch.Tensor
    learn_codebook: bool

    @property
    def straight_through(self) -> torch.Tensor:
        """z_q in value, z_e in gradient: ``z_e + sg[z_q - z_e]`` (the decoder's gradient reaches z_e)."""
        return self.z_e + (self.z_q - self.z_e).detach()

    def squared_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``||a - b||^2`` summed over each map's (D, h, w), shape ``(...)``."""
        return (a - b).pow(2).sum((-3, -2, -1))


def as_vectors(z: torch.Tensor) -> torch.Tensor:
    """A map ``(..., D, h, w)`` as vectors ``(..., h, w, D)``."""
    return z.movedim(-3, -1)


def as_map(v: torch.Tensor) -> torch.Tensor:
    """Vectors ``(..., h, w, D)`` as a map ``(..., D, h, w)``."""
    return v.movedim(-1, -3)


class Codebook(nn.Module):
    """K code vectors e_1..e_K in R^D, trained by the codebook loss or by exponential moving averages.

    ``update="loss"``: the vectors are a parameter, moved by the gradient of ``||sg[z_e] - e||^2``.
    ``update="ema"``: the vectors are a buffer; every training batch, with n_i the number of vectors
    assigned to code i and s_i their sum, ``N_i <- decay N_i + (1 - decay) n_i``,
    ``m_i <- decay m_i + (1 - decay) s_i`` and ``e_i = m_i / N~_i``, where
    ``N~_i = (N_i + eps) / (sum N + K eps) * sum N`` (Laplace smoothing, so a code that is never chosen
    does not divide by zero). N starts at 1 and m at the initial vectors, so e starts there too.

    ``init_from_data``: the first training batch moves every code it does not choose onto one of its
    encoder outputs (drawn at random), as a restart would; the uniform initialization in
    ``[-1/K, 1/K]`` sits far from the encoder's outputs, and without this a few codes take every
    vector and the rest wait ``dead_after`` batches for a restart (a short run never recovers).

    Dead-code restarts (either update): a code not chosen for ``dead_after`` consecutive training
    batches is moved onto a randomly drawn encoder output of the current batch (in EMA mode with
    N_i = 1, m_i = that vector); ``dead_after=0`` never restarts. The moment estimates of Adam for a
    restarted row (``update="loss"``) are not reset.

    Every update happens in :meth:`observe`, which a guide calls in training mode only; all of it is
    state (buffers) saved with the module.

    :param size: K, at least 2.
    :param dim: D.
    """

    def __init__(self, size: int, dim: int, update: CodebookUpdate = "loss", decay: float = 0.99,
                 epsilon: float = 1e-5, dead_after: int = 0, init_from_data: bool = False):
        super().__init__()
        if size < 2:
            raise ConfigError(f"a codebook needs at least 2 codes (with {size} the latent carries no "
                              "information); set codebook_size >= 2, e.g. 16, 64 or 256")
        if update not in ("loss", "ema"):
            raise ConfigError(f"codebook update must be 'loss' or 'ema', got {update!r}")
        self.size, self.dim, self.update = size, dim, update
        self.decay, self.epsilon, self.dead_after = decay, epsilon, dead_after
        init = torch.empty(size, dim).uniform_(-1.0 / size, 1.0 / size)
        if update == "loss":
            self.vectors = nn.Parameter(init)
        else:
            self.register_buffer("vectors", init)
            self.register_buffer("ema_count", torch.ones(size))
            self.register_buffer("ema_sum", init.clone())
        self.register_buffer("unused_steps", torch.zeros(size, dtype=torch.long))
        self.register_buffer("pending_init", torch.tensor(init_from_data))

    @torch.no_grad()
    def nearest(self, v: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance, ties to the lower index) of each
        vector ``v[..., D]``, shape ``(...)``."""
        e = self.vectors
        d = v.pow(2).sum(-1, keepdim=True) - 2 * v @ e.T + e.pow(2).sum(-1)
        return d.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The code vectors ``(..., D)`` of ``codes[...]``."""
        return F.embedding(codes, self.vectors)

    @torch.no_grad()
    def observe(self, v: torch.Tensor, codes: torch.Tensor) -> None:
        """One training batch: encoder outputs ``v[..., D]`` assigned to ``codes[...]``; EMA and restarts."""
        v, codes = v.reshape(-1, self.dim), codes.reshape(-1)
        counts = torch.bincount(codes, minlength=self.size).to(v.dtype)
        if self.update == "ema":
            sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, v)
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + self.epsilon) / (total + self.size * self.epsilon) * total
            self.vectors.copy_(self.ema_sum / smoothed[:, None])
        self.unused_steps.copy_(torch.where(counts > 0, 0, self.unused_steps + 1))
        self._restart(v)

    def _restart(self, v: torch.Tensor) -> None:
        # Branch-free (no Python test on values), so a traced step stays valid.
        dead = self.pending_init & (self.unused_steps > 0)
        if self.dead_after > 0:
            dead = dead | (self.unused_steps >= self.dead_after)
        self.pending_init.fill_(False)
        picks = v[torch.randint(len(v), (self.size,), device=v.device)]
        self.vectors.copy_(torch.where(dead[:, None], picks, self.vectors))
        if self.update == "ema":
            self.ema_sum.copy_(torch.where(dead[:, None], picks, self.ema_sum))
            self.ema_count.copy_(torch.where(dead, 1.0, self.ema_count))
        self.unused_steps.masked_fill_(dead, 0)

    def quantize(self, z_e: torch.Tensor, update: bool = False) -> Quantization:
        """Quantize the map ``z_e`` of shape ``(..., D, h, w)``.

        With ``update`` (training) the codebook first :meth:`observe` s the batch, then the codes'
        vectors are read, so the returned z_q lies on the codebook the model scores afterwards.
        """
        if z_e.dim() < 3 or z_e.shape[-3] != self.dim:
            raise ConfigError(f"the encoder output must be a map (..., {self.dim}, h, w), "
                              f"got {tuple(z_e.shape)}")
        v = as_vectors(z_e)
        codes = self.nearest(v.detach())
        if update:
            self.observe(v.detach(), codes)
        return Quantization(z_e, codes, as_map(self.lookup(codes)), self.update == "loss")


__all__ = ["QUANTIZATION", "Codebook", "CodebookUpdate", "Quantization", "as_map", "as_vectors"]
