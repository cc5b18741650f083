"""Discovering a model's latent sample sites, the names and shapes a guide must match."""

from __future__ import annotations

from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from vaezoo.errors import ConfigError
from vaezoo.nets import evaluating


@dataclass(frozen=True)
class LatentSite:
    name: str
    event_shape: tuple[int, ...]
    continuous: bool
    real_support: bool


def latent_sites(model, x: torch.Tensor | None = None) -> list[LatentSite]:
    """Latent sites of ``model`` in the order the model samples them.

    Traces ``model`` once on ``x`` (default ``model.example_x(2)``) with all effects blocked from the
    outside world, so discovery leaves no trace in the param store or in an enclosing handler.
    """
    if x is None:
        x = model.example_x(2)
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
