"""Latents as flat vectors: the model's log density at given values, under a plate safe to nest.

MCMC, local variational parameters and gradient refinement all work on one real vector per
(chain, datapoint): ``z`` of shape ``(c, batch, D)``, the model's latent sites concatenated in the
order the model samples them. :class:`LatentLayout` converts between that vector and the sites,
:func:`log_joint` and :func:`joint_parts` evaluate log p(x, z) per chain and datapoint.

Those functions are called from inside guides, which objectives run under their own
``pyro.plate("particles")``. :func:`chain_plate` therefore blocks every enclosing handler (so no
inner site reaches an enclosing trace) and opens its ``"chains"`` plate at a dim left of every
enclosing plate, which Pyro's global dim allocator would otherwise refuse.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.runtime import get_plates
from torch.distributions import kl_divergence, register_kl

from vaezoo.errors import ConfigError
from vaezoo.inference.traces import PARTICLES, PairTrace, plate_dims
from vaezoo.nets import evaluating
from vaezoo.sites import real_latents

CHAINS = "chains"


class LatentLayout:
    """Where each latent site of ``model`` sits in the flat vector ``z[..., D]``.

    Requires real-valued continuous latents whose only batch dimension is the data plate (dim -1),
    as for every vaezoo model; otherwise a :class:`ConfigError` names the offending sites.
    """

    def __init__(self, model, who: str = "this estimator"):
        sites = real_latents(
            model,
            f"{who} moves latents freely in R^D",
            "it needs a model whose latents are real-valued (e.g. Gaussian)",
        )
        x = model.example_x(2)
        with torch.no_grad(), poutine.block(), evaluating(model):  # leaves batch-norm statistics alone
            trace = poutine.trace(model).get_trace(x)
        extra = [s.name for s in sites if tuple(trace.nodes[s.name]["fn"].batch_shape) != (2,)]
        if extra:
            raise ConfigError(
                f"{who} needs one latent vector per datapoint, but sites {extra} of {type(model).__name__} "
                "have batch dimensions besides pyro.plate('data') at dim -1"
            )
        self.names = [s.name for s in sites]
        self.event_shapes = [s.event_shape for s in sites]
        self.sizes = [math.prod(s) for s in self.event_shapes]
        self.dim = sum(self.sizes)

    def split(self, z: torch.Tensor, lead: int | None = None) -> dict[str, torch.Tensor]:
        """Site values from ``z`` of shape ``(c, batch, D)``.

        With ``lead`` (the number of plate dims, chains leftmost) each value has shape
        ``(c, 1, ..., 1, batch, *event)``; with ``lead=None`` the chain dim is dropped (c must be 1).
        """
        c, batch = z.shape[:2]
        out = {}
        for name, shape, part in zip(self.names, self.event_shapes, z.split(self.sizes, -1), strict=True):
            if lead is None:
                out[name] = part.reshape(batch, *shape)
            else:
                out[name] = part.reshape(c, *(1,) * (lead - 2), batch, *shape)
        return out

    def join(self, values: dict[str, torch.Tensor], c: int, batch: int) -> torch.Tensor:
        """The inverse of :meth:`split`: ``(c, batch, D)`` from site values of any plate layout."""
        # Values traced under a chains plate are (c, 1, ..., batch, *event); without one, (batch, *event).
        parts = [
            values[n].reshape(-1, batch, size).expand(c, batch, size)
            for n, size in zip(self.names, self.sizes, strict=True)
        ]
        return torch.cat(parts, -1)


@contextlib.contextmanager
def chain_plate(model, c: int) -> Iterator[int]:
    """Run the body under a ``"chains"`` plate of size ``c``, hidden from every enclosing handler.

    Yields the number of plate dims of a site inside (chains leftmost), for :class:`PairTrace`.
    """
    taken = [f.dim for f in get_plates() if f.dim is not None]
    dim = min([-plate_dims(model), *[d - 1 for d in taken]])
    with poutine.block(), pyro.plate(CHAINS, c, dim=dim):
        yield -dim


def _as_particles(trace: poutine.Trace) -> poutine.Trace:
    """Relabel the chains plate as the particle plate, by whose name :class:`PairTrace` reduces sites."""
    for site in trace.nodes.values():
        if site["type"] == "sample":
            stack = site["cond_indep_stack"]
            site["cond_indep_stack"] = tuple(
                f._replace(name=PARTICLES) if f.name == CHAINS else f for f in stack
            )
    return trace


def trace_pair(model, guide, x: torch.Tensor, c: int) -> PairTrace:
    """Like :func:`~vaezoo.inference.traces.run_pair` with ``c`` particles, but safe inside a guide."""
    with chain_plate(model, c) as lead:
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return PairTrace(_as_particles(model_trace), _as_particles(guide_trace), c, x.shape[0], lead)


class JointParts(NamedTuple):
    log_prior: torch.Tensor  # sum of the latent sites' log p, (c, batch)
    log_lik: torch.Tensor  # sum of the observed sites' log p, (c, batch)


def joint_parts(model, x: torch.Tensor, z: torch.Tensor, layout: LatentLayout) -> JointParts:
    """log p(z) and log p(x | z) per chain and datapoint at the flat latents ``z`` ``(c, batch, D)``."""
    c = z.shape[0]
    with chain_plate(model, c) as lead:
        conditioned = poutine.condition(model, data=layout.split(z, lead))
        trace = poutine.trace(conditioned).get_trace(x)
    pair = PairTrace(_as_particles(trace), poutine.Trace(), c, x.shape[0], lead)
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
    with torch.no_grad(), chain_plate(model, c):
        trace = poutine.trace(model).get_trace(x)
    return layout.join({n: trace.nodes[n]["value"] for n in layout.names}, c, x.shape[0])


def elbo_particles(pair: PairTrace, analytic_kl: bool = True) -> torch.Tensor:
    """One ELBO term per particle and datapoint, ``(k, batch)``: log p(x|z) - KL, or its MC form."""
    total = sum(pair.log_p(n) for n in pair.observed)
    for name in pair.latent:
        kl = pair.analytic_kl(name) if analytic_kl else None
        total = total - kl if kl is not None else total + pair.log_p(name) - pair.log_q(name)
    return total


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


def enclosing_particles() -> tuple[int, int | None]:
    """``(k, lead)`` of the enclosing ``pyro.plate("particles")`` (lead = plate dims, particles leftmost),
    or ``(1, None)`` when a guide runs without one."""
    for frame in get_plates():
        if frame.name == PARTICLES:
            return frame.size, -frame.dim
    return 1, None


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
