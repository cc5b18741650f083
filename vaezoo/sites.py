"""Discovering a model's latent sample sites, the names and shapes a guide must match, and the
flat layout of real-valued latents that MCMC and per-datapoint guides move as one vector."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from vaezoo.errors import ConfigError
from vaezoo.nets import evaluating

#: Datapoints in the trace that discovers a model's sites (batch shapes are read relative to it).
DISCOVERY_BATCH = 2


@dataclass(frozen=True)
class LatentSite:
    name: str
    event_shape: tuple[int, ...]
    continuous: bool
    real_support: bool
    batch_shape: tuple[int, ...]  # in the discovery trace, whose data plate has DISCOVERY_BATCH rows


def latent_sites(model, x: torch.Tensor | None = None) -> list[LatentSite]:
    """Latent sites of ``model`` in the order the model samples them.

    Traces ``model`` once on ``x`` (default ``model.example_x(DISCOVERY_BATCH)``) with all effects
    blocked from the outside world, so discovery leaves no trace in the param store or in an
    enclosing handler.
    """
    if x is None:
        x = model.example_x(DISCOVERY_BATCH)
    # Eval mode: discovery must not move batch-norm running statistics.
    with torch.no_grad(), poutine.block(), evaluating(model):
        trace = poutine.trace(model).get_trace(x)
    sites = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        fn = site["fn"]
        support = fn.support
        while isinstance(support, dist.constraints.independent):
            support = support.base_constraint
        sites.append(
            LatentSite(
                name=name,
                event_shape=tuple(fn.event_shape),
                continuous=not fn.support.is_discrete,
                real_support=support is dist.constraints.real,
                batch_shape=tuple(fn.batch_shape),
            )
        )
    if not sites:
        raise ConfigError(f"{type(model).__name__} has no latent sample sites; nothing to infer")
    return sites


def real_latents(model, need: str, fix: str) -> list[LatentSite]:
    """The model's latent sites, or a :class:`ConfigError` if one is discrete or constrained.

    ``need`` says what the caller does with them and ``fix`` what the user can do instead.
    """
    sites = latent_sites(model)
    bad = [s.name for s in sites if not (s.continuous and s.real_support)]
    if bad:
        raise ConfigError(
            f"{need}, but {type(model).__name__} has discrete or constrained latent sites {bad}; {fix}"
        )
    return sites


class LatentLayout:
    """Where each latent site of ``model`` sits in the flat vector ``z[..., D]``.

    MCMC, local variational parameters and gradient refinement all work on one real vector per
    (particle, datapoint): ``z`` of shape ``(c, batch, D)``, the model's latent sites concatenated in
    the order the model samples them. Read from the one discovery trace of :func:`real_latents`.
    Requires real-valued continuous latents whose only batch dimension is the data plate (dim -1),
    as for every vaezoo model; otherwise a :class:`ConfigError` names the offending sites.

    ``who`` names the caller in error messages.
    """

    def __init__(self, model, who: str = "this estimator"):
        sites = real_latents(
            model,
            f"{who} moves latents freely in R^D",
            "it needs a model whose latents are real-valued (e.g. Gaussian)",
        )
        extra = [s.name for s in sites if s.batch_shape != (DISCOVERY_BATCH,)]
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

        With ``lead`` (the number of plate dims, particles leftmost) each value has shape
        ``(c, 1, ..., 1, batch, *event)``; with ``lead=None`` the particle dim is dropped (c must be 1).
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
        # Values traced under a particle plate are (c, 1, ..., batch, *event); without one, (batch, *event).
        parts = [
            values[n].reshape(-1, batch, size).expand(c, batch, size)
            for n, size in zip(self.names, self.sizes, strict=True)
        ]
        return torch.cat(parts, -1)


def require_likelihood(model, who: str) -> None:
    """Raise :class:`ConfigError` if ``model``'s observations have no density (a simulator, see
    :mod:`vaezoo.models.implicit`) while ``who`` evaluates log p(x, z)."""
    if not getattr(model, "has_likelihood", True):
        raise ConfigError(
            f"{who} evaluates the model's log p(x, z), but {type(model).__name__} is a simulator with no "
            "density for x; use a reparameterized guide (e.g. 'affine_normal') with the objective 'lfvi'"
        )


def require_real_latents(model, guide_name: str) -> list[LatentSite]:
    """The model's latent sites, or a :class:`ConfigError` if guide ``guide_name`` cannot serve one."""
    return real_latents(
        model,
        f"guide {guide_name!r} places Normal distributions on every latent site",
        "use a guide written for that model (its default_guide()) instead",
    )


def layer_order(model, sites: list[LatentSite] | None = None) -> list[str]:
    """The names of the model's latent sites, bottom (next to x) first.

    Read from the model's ``layer_sites`` when it declares them (every hierarchical vaezoo model
    does); otherwise the order in which the model samples its sites, taken from ``sites`` (the
    model's :func:`latent_sites`, when the caller has them already) or from one trace of the model.
    """
    names = getattr(model, "layer_sites", None)
    if names:
        return list(names)
    return [s.name for s in (sites if sites is not None else latent_sites(model))]


def real_layers(model, guide_name: str) -> list[LatentSite]:
    """:func:`require_real_latents` in :func:`layer_order`, for guides that infer layer by layer."""
    sites = require_real_latents(model, guide_name)  # traced once, in eval mode
    by_name = {s.name: s for s in sites}
    return [by_name[n] for n in layer_order(model, sites)]
