"""The VQ-VAE objective: the bound log p(x | z_q) + log p(z_q) with the codebook and commitment losses."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pyro import poutine

from vaezoo.errors import ConfigError
from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import run_pair
from vaezoo.nets import QUANTIZATION, Quantization, evaluating
from vaezoo.registry import register_objective


def site_quantizations(guide_trace: poutine.Trace) -> list[Quantization]:
    """The :class:`~vaezoo.nets.Quantization` records that a guide left on its sample sites."""
    return [s["infer"][QUANTIZATION] for s in guide_trace.nodes.values()
            if s["type"] == "sample" and QUANTIZATION in (s.get("infer") or {})]


def _missing(guide) -> ConfigError:
    return ConfigError(f"the vq objective trains a guide that quantizes its encoder output (one that leaves "
                       f"infer[{QUANTIZATION!r}] on its site, such as guide 'vq'), and "
                       f"{type(guide).__name__} "
                       "does not; train this pair with elbo instead")


@torch.no_grad()
def quantizations(guide, x: torch.Tensor) -> list[Quantization]:
    """The quantizations of ``guide`` on ``x``, in eval mode (so the codebook is not moved), no graph.

    :raises ConfigError: if the guide quantizes nothing.
    """
    with poutine.block(), evaluating(guide):
        found = site_quantizations(poutine.trace(guide).get_trace(x))
    if not found:
        raise _missing(guide)
    return found


@dataclass(frozen=True)
class VQConfig:
    commitment: float = field(
        default=0.25, metadata={"help": "weight of the commitment loss ||z_e - sg[e]||^2 (the paper's beta)",
                                "min": 0}
    )


@register_objective("vq", VQConfig)
class VQ(Objective):
    """L(x) = log p(x | z_q) + log p(z_q) - ||sg[z_e] - z_q||^2 - commitment ||z_e - sg[z_q]||^2.

    van den Oord et al.'s loss with the bound's latent term kept: for the guide's deterministic
    (one-hot) posterior, ``log p(x | z_q) + log p(z_q) - log q(z_q | x)`` with log q = 0 is the ELBO, a
    lower bound on log p(x); under the uniform prior of stage 1 ``log p(z_q) = -hw log K`` is a
    constant, so the gradient is the paper's. The decoder's gradient reaches the encoder through the
    guide's straight-through value. The codebook loss is left out when the codebook is updated by
    moving averages (the quantization says which). :meth:`bound` reports the bound alone, without
    the two losses (which are not terms of any bound).

    The squared distances are summed over each code map (D, h, w), as log p(x | z) is summed over the
    pixels, where the paper's implementations average both; with a Bernoulli likelihood summed over
    784 pixels, averaging the VQ terms would make them negligible.

    The guide's code maps come through its sites' ``infer["quantization"]``
    (:func:`site_quantizations`): the objective trains any guide that leaves one, without knowing it.

    References:
        - van den Oord, Vinyals & Kavukcuoglu (2017), Neural Discrete Representation Learning, NIPS.
    """

    def terms(
        self, model, guide, x: torch.Tensor, latent_weight: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the bound, the VQ losses), each per datapoint ``(batch,)``."""
        with scaled_latents(latent_weight):
            pair = run_pair(model, guide, x, 1)
        found = site_quantizations(pair.guide_trace)
        if not found:
            raise _missing(guide)
        penalty = x.new_zeros(x.shape[0])
        for q in found:
            if q.learn_codebook:
                penalty = penalty + q.squared_distance(q.z_e.detach(), q.z_q)
            penalty = penalty + self.config.commitment * q.squared_distance(q.z_e, q.z_q.detach())
        return pair.log_weight()[0], penalty

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        bound, penalty = self.terms(model, guide, x, latent_weight)
        return bound - penalty

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        return self.terms(model, guide, x)[0]

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        quantizations(guide, x[:1])
