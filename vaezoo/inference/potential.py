"""The model's log joint at flat latents: the potential that HMC moves on, and draws from its prior.

Annealed importance sampling and HMC-refined guides evaluate log p(x, z) at many flat latent
vectors ``z`` of shape ``(c, batch, D)`` (see :class:`~vaezoo.sites.LatentLayout`), one per chain
and datapoint. The model is run conditioned on ``z`` in a nested particle run
(:func:`~vaezoo.inference.traces.particle_plate`), so a guide may do this from inside an objective.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from pyro import poutine

from vaezoo.inference.traces import PairTrace, particle_plate
from vaezoo.sites import LatentLayout


class JointParts(NamedTuple):
    log_prior: torch.Tensor  # sum of the latent sites' log p, (c, batch)
    log_lik: torch.Tensor  # sum of the observed sites' log p, (c, batch)


def joint_parts(model, x: torch.Tensor, z: torch.Tensor, layout: LatentLayout) -> JointParts:
    """log p(z) and log p(x | z) per chain and datapoint at the flat latents ``z`` ``(c, batch, D)``."""
    c = z.shape[0]
    with particle_plate(model, c, nested=True) as plate:
        conditioned = poutine.condition(model, data=layout.split(z, plate.lead))
        trace = poutine.trace(conditioned).get_trace(x)
    pair = PairTrace(trace, poutine.Trace(), c, x.shape[0], plate.lead, plate.name)
    prior = sum(pair.log_p(n) for n in layout.names)
    lik = sum(pair.log_p(n) for n in pair.observed if n not in layout.names)
    return JointParts(prior, lik)


def log_joint(model, x: torch.Tensor, latents: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(x, z) per chain and datapoint, shape ``(c, batch)``, for site values ``(c, batch, *event)``."""
    layout = LatentLayout(model, "log_joint")
    c = next(iter(latents.values())).shape[0]
    z = torch.cat([latents[n].reshape(c, x.shape[0], -1) for n in layout.names], -1)
    prior, lik = joint_parts(model, x, z, layout)
    return prior + lik


def sample_prior(model, x: torch.Tensor, c: int, layout: LatentLayout) -> torch.Tensor:
    """``c`` draws per datapoint from the model's prior p(z), flat ``(c, batch, D)``."""
    with torch.no_grad(), particle_plate(model, c, nested=True):
        trace = poutine.trace(model).get_trace(x)
    return layout.join({n: trace.nodes[n]["value"] for n in layout.names}, c, x.shape[0])
