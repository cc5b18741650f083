"""The amortized orthogonal Sylvester-flow guide of van den Berg et al. (2018)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.flow_base import FlowEncoderConfig, FlowGuide
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class SylvesterConfig(FlowEncoderConfig):
    steps: int = field(default=4, metadata={"help": "Sylvester steps K", "min": 1})
    rank: int = field(
        default=0,
        metadata={"help": "columns M of each step's orthonormal Q (at most the latent size D)", "min": 0,
                  "zero": "M = D"},
    )


def sylvester_step(
    z: torch.Tensor, q: torch.Tensor, r: torch.Tensor, r_tilde: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z + Q R tanh(R~ Q^T z + b), log |det|)`` for orthonormal Q ``(..., D, M)``, upper-triangular R, R~.

    det = det(I_M + diag(tanh') R~ R) = prod_i (1 + tanh'(a_i) r_ii r~_ii) (Sylvester's determinant
    identity, Q^T Q = I), positive when every |r_ii r~_ii| < 1.
    """
    a = torch.einsum("...mn,...n->...m", r_tilde, torch.einsum("...dm,...d->...m", q, z)) + b
    t = torch.tanh(a)
    z = z + torch.einsum("...dm,...m->...d", q, torch.einsum("...mn,...n->...m", r, t))
    diag = r.diagonal(dim1=-2, dim2=-1) * r_tilde.diagonal(dim1=-2, dim2=-1)
    return z, (1 + (1 - t.pow(2)) * diag).abs().log().sum(-1)


@register_guide("sylvester", SylvesterConfig)
class SylvesterGuide(FlowGuide):
    """q(z | x): a diagonal Gaussian given x pushed through K orthogonal Sylvester steps given x.

    Sampling (z is the model's latent sites concatenated, D coordinates; M <= D the rank)::

        [mu, sigma, (A_k, R_k, R~_k, b_k) for k = 1..K] = encoder(x)
        z_0 = mu + sigma * eps,  eps ~ N(0, I_D)
        z_k = z_{k-1} + Q_k R_k tanh(R~_k Q_k^T z_{k-1} + b_k),   Q_k = orthonormal columns of A_k
        log q(z_K | x) = log N(z_0; mu, sigma^2) - sum_k sum_i log (1 + tanh'(.)_i r_k,ii r~_k,ii)

    R and R~ are the upper triangles of M x M outputs with diagonals tanh(.), so |r_ii r~_ii| < 1 and
    every step is invertible (tanh' is in (0, 1]).

    The guide scores its own draws only (:mod:`~vaezoo.guides.flow_base`); pathwise, score-function
    and DReG gradients work.

    Deviations from the paper: Q is orthonormalized by a QR decomposition of the encoder's D x M
    output (exact and differentiable) instead of the paper's iterative Bjorck procedure, and no
    Householder variant is offered; the flow acts on all latent sites of the model jointly.

    References:
        - van den Berg, Hasenclever, Tomczak & Welling (2018), Sylvester Normalizing Flows for
          Variational Inference, UAI.
    """

    def __init__(self, model, config: SylvesterConfig | dict | None = None, **overrides):
        super().__init__(model, resolve(SylvesterConfig, config, overrides))

    def cond_size(self) -> int:
        rank = self.config.rank or self.dim
        if rank > self.dim:
            raise ConfigError(
                f"sylvester rank M = {rank} exceeds the latent size D = {self.dim} of this model: Q has M "
                f"orthonormal columns in R^D; set rank to at most {self.dim} (or 0 for M = D)",
                "rank", rank, f"an integer <= {self.dim}",
            )
        self.rank = rank
        return self.config.steps * (self.dim * rank + 2 * rank * rank + rank)

    def step_params(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """``(Q, R, R~, b)`` of every step from the encoder's ``cond`` ``(..., C)``."""
        d, m = self.dim, self.rank
        out = []
        for chunk in cond.chunk(self.config.steps, -1):
            a, r, r_t, b = chunk.split([d * m, m * m, m * m, m], -1)
            q = torch.linalg.qr(a.unflatten(-1, (d, m))).Q
            out.append((q, _triangular(r.unflatten(-1, (m, m))), _triangular(r_t.unflatten(-1, (m, m))), b))
        return out

    def transform(self, z0: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_det = z0, z0.new_zeros(())
        for q, r, r_tilde, b in self.step_params(cond):
            z, step = sylvester_step(z, q, r, r_tilde, b)
            log_det = log_det + step
        return z, log_det


def _triangular(raw: torch.Tensor) -> torch.Tensor:
    """The strict upper triangle of ``raw`` with tanh of its diagonal on the diagonal."""
    return raw.triu(1) + torch.diag_embed(torch.tanh(raw.diagonal(dim1=-2, dim2=-1)))


__all__ = ["SylvesterConfig", "SylvesterGuide", "sylvester_step"]
