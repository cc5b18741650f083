"""Guide-side helpers for guides that hold all latents as one flat vector per datapoint.

Local variational parameters, per-datapoint flows and MCMC-refined samples live in the layout of
:class:`~vaezoo.sites.LatentLayout`; :func:`sample_flat` emits such a vector as the model's sites.
A guide whose log density is not that of its sampling distribution (refined or MCMC samples
trained with the encoder's own bound) documents the extra term with :class:`Shifted`.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import kl_divergence, register_kl

from vaezoo.inference.traces import enclosing_particles
from vaezoo.sites import LatentLayout


class Shifted(dist.TorchDistribution):
    """``base`` with ``shift`` added to its log density: a guide site with a documented extra term.

    Guides whose objective is not the plain ELBO of their sampling distribution (refined or MCMC
    samples trained with the encoder's own bound) put that term here; objectives see it in both the
    Monte Carlo form log p - log q and the closed-form KL, which is KL(base || p) + shift.
    """

    arg_constraints: dict = {}

    def __init__(self, base: dist.TorchDistribution, shift: torch.Tensor):
        self.base = base
        self.shift = shift.expand(base.batch_shape)
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    @property
    def has_rsample(self) -> bool:
        return self.base.has_rsample

    def expand(self, batch_shape, _instance=None):
        return Shifted(self.base.expand(batch_shape), self.shift.expand(batch_shape))

    def sample(self, sample_shape=()):
        return self.base.sample(torch.Size(sample_shape))

    def rsample(self, sample_shape=()):
        return self.base.rsample(torch.Size(sample_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value) + self.shift


@register_kl(Shifted, torch.distributions.Distribution)
def _kl_shifted(p: Shifted, q: torch.distributions.Distribution) -> torch.Tensor:
    return kl_divergence(p.base, q) + p.shift


def point_mass(value: torch.Tensor, event_dim: int, log_density: torch.Tensor | None = None):
    """A site fixed at ``value`` whose log q is ``log_density`` (pyro's Delta KL would drop it)."""
    delta = dist.Delta(value, event_dim=event_dim)
    return delta if log_density is None else Shifted(delta, log_density)


def sample_flat(
    layout: LatentLayout, x: torch.Tensor, z: torch.Tensor, log_density: torch.Tensor | None = None
) -> None:
    """Sample the model's latent sites at the flat values ``z`` ``(k, batch, D)`` as a guide.

    ``k`` must be the size of the enclosing particle plate (1 without one). The joint log q of all
    sites, ``log_density`` ``(k, batch)``, is put on the first site and 0 on the others: objectives
    only ever use the sum over sites.
    """
    _, lead = enclosing_particles()
    values = layout.split(z, lead)
    first = values[layout.names[0]]
    if log_density is not None:
        log_density = log_density.reshape(first.shape[: first.dim() - len(layout.event_shapes[0])])
    with pyro.plate("data", x.shape[0]):
        for i, (name, shape) in enumerate(zip(layout.names, layout.event_shapes, strict=True)):
            pyro.sample(name, point_mass(values[name], len(shape), log_density if i == 0 else None))
