"""The amortized planar-flow guide of Rezende & Mohamed (2015)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vaezoo.config import resolve
from vaezoo.guides.flow_base import FlowEncoderConfig, FlowGuide
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class PlanarConfig(FlowEncoderConfig):
    steps: int = field(
        default=4, metadata={"help": "planar steps K (each step's u, w, b come from x)", "min": 1}
    )


def planar_u_hat(u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u_hat, w . u_hat)``: u moved along w so that w . u_hat = -1 + softplus(w . u) >= -1.

    Then z -> z + u_hat tanh(w . z + b) is invertible for every (u, w, b) (Rezende & Mohamed,
    appendix A): along w its derivative is 1 + (w . u_hat) tanh'(.) >= 0, zero at most at one
    point, and it is the identity orthogonal to w. w . u_hat is returned in that closed form, not
    as a dot product whose rounding could cross -1 when |w . u| is large.
    """
    wu = (w * u).sum(-1, keepdim=True)
    w_norm2 = w.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    wu_hat = F.softplus(wu) - 1
    return u + (wu_hat - wu) * w / w_norm2, wu_hat


def planar_step(
    z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``(z + u_hat tanh(w . z + b), log |1 + u_hat . psi(z)|)``, psi = tanh'(w . z + b) w."""
    u_hat, wu_hat = planar_u_hat(u, w)
    t = torch.tanh((w * z).sum(-1, keepdim=True) + b)
    det = 1 + wu_hat * (1 - t.pow(2))  # >= 1 - (1 - t^2) >= 0 exactly, since wu_hat >= -1
    return z + u_hat * t, det.log().squeeze(-1)


@register_guide("planar", PlanarConfig)
class PlanarGuide(FlowGuide):
    """q(z | x): a diagonal Gaussian given x pushed through K planar steps whose parameters depend on x.

    Sampling (z is the model's latent sites concatenated, D coordinates)::

        [mu, sigma, (u_k, w_k, b_k) for k = 1..K] = encoder(x)
        z_0 = mu + sigma * eps,  eps ~ N(0, I_D)
        z_k = z_{k-1} + u_hat_k tanh(w_k . z_{k-1} + b_k)
        log q(z_K | x) = log N(z_0; mu, sigma^2) - sum_k log |1 + u_hat_k . tanh'(w_k . z_{k-1} + b_k) w_k|

    u_hat = u + (m(w . u) - w . u) w / |w|^2 with m(a) = -1 + softplus(a), so w . u_hat > -1 and
    every step is invertible whatever the encoder outputs (:func:`planar_u_hat`).

    A planar step has no closed-form inverse, so the guide scores only its own draws (see
    :mod:`~vaezoo.guides.flow_base`): pathwise, score-function and DReG gradients work; replaying it
    on values another guide drew raises :class:`~vaezoo.errors.ConfigError`.

    Deviations from the paper: the flow acts on all latent sites of the model jointly (its sites
    are emitted with the joint log q on the first), and the encoder is an MLP for any model with real
    latents rather than the paper's fixed architecture.

    References:
        - Rezende & Mohamed (2015), Variational Inference with Normalizing Flows, ICML.
    """

    def __init__(self, model, config: PlanarConfig | dict | None = None, **overrides):
        config = resolve(PlanarConfig, config, overrides)
        super().__init__(model, config)

    def cond_size(self) -> int:
        return self.config.steps * (2 * self.dim + 1)

    def step_params(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(u, w, b)`` of every step from ``cond``: ``(..., K, D)``, ``(..., K, D)``, ``(..., K, 1)``."""
        d = self.dim
        per_step = cond.unflatten(-1, (self.config.steps, 2 * d + 1))
        return per_step[..., :d], per_step[..., d : 2 * d], per_step[..., 2 * d :]

    def transform(self, z0: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, w, b = self.step_params(cond)
        z, log_det = z0, z0.new_zeros(())
        for k in range(self.config.steps):
            z, step = planar_step(z, u[..., k, :], w[..., k, :], b[..., k, :])
            log_det = log_det + step
        return z, log_det


__all__ = ["PlanarConfig", "PlanarGuide", "planar_u_hat", "planar_step"]
