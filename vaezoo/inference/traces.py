"""Running a model/guide pair over vectorized particles and reading per-datapoint log densities.

Every objective and estimator in :mod:`vaezoo.inference` starts here: the guide is traced under an
outer ``pyro.plate("particles", k)`` placed left of the model's own plates, the model is replayed on
the guide's samples, and :class:`PairTrace` turns the two traces into ``(k, batch)`` tensors, one
per site, so that bounds are formed **per datapoint** (which IWAE and importance sampling need; a
scalar loss as in :class:`pyro.infer.Trace_ELBO` would mix datapoints inside the log-sum-exp).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from vaezoo.errors import ConfigError
from vaezoo.zoo_module import param_statements_skipped

PARTICLES = "particles"
DATA = "data"


def per_datapoint(value: torch.Tensor, site: dict) -> torch.Tensor:
    """Reduce a site's (broadcastable) batch-shaped tensor to shape ``(k, batch)``.

    Sums over every plate dimension but the particle and data plates, read from the site's
    ``cond_indep_stack``; used for log densities, KL terms and estimator surrogates alike.
    """
    frames = {f.name: f for f in site["cond_indep_stack"]}
    if DATA not in frames:
        raise ConfigError(
            f"sample site {site['name']!r} is outside pyro.plate({DATA!r}); every site of a vaezoo model "
            "and guide must sit inside the data plate so that bounds are per datapoint"
        )
    keep = [frames[DATA].dim] + ([frames[PARTICLES].dim] if PARTICLES in frames else [])
    n = max(value.dim(), *(-d for d in keep))
    value = value.reshape((1,) * (n - value.dim()) + value.shape)
    other = [d for d in range(-n, 0) if d not in keep]
    if other:
        value = value.sum(other)
    if PARTICLES not in frames:
        value = value.unsqueeze(0)
    k = frames[PARTICLES].size if PARTICLES in frames else 1
    return value.expand(k, frames[DATA].size)


def _sample_sites(trace) -> dict[str, dict]:
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


@dataclass
class PairTrace:
    """The traces of one guide run and the model replayed on it, with ``k`` particles per datapoint."""

    model_trace: poutine.Trace
    guide_trace: poutine.Trace
    num_particles: int
    batch_size: int
    plate_dims: int

    def __post_init__(self) -> None:
        self.model_sites = _sample_sites(self.model_trace)
        self.guide_sites = _sample_sites(self.guide_trace)
        self.latent = [n for n, s in self.model_sites.items() if not s["is_observed"]]
        self.observed = [n for n, s in self.model_sites.items() if s["is_observed"]]
        check_sites_agree(self.model_sites, self.guide_sites)

    def per_datapoint(self, value: torch.Tensor, site: dict, name: str) -> torch.Tensor:
        """:func:`per_datapoint` of ``value`` at ``site``, shape ``(k, batch)``."""
        return per_datapoint(value, site)

    def _log_prob(self, site: dict, name: str) -> torch.Tensor:
        lp = site["fn"].log_prob(site["value"])
        return self.per_datapoint(scale_and_mask(lp, site["scale"], site["mask"]), site, name)

    def log_p(self, name: str) -> torch.Tensor:
        """log p of model site ``name`` (times its scale), shape ``(k, batch)``."""
        return self._log_prob(self.model_sites[name], name)

    def log_q(self, name: str) -> torch.Tensor:
        """log q of guide site ``name`` (times its scale), shape ``(k, batch)``."""
        return self._log_prob(self.guide_sites[name], name)

    def log_weight(self) -> torch.Tensor:
        """log p(x, z) - log q(z | x) per particle and datapoint, shape ``(k, batch)``."""
        total = sum(self.log_p(n) for n in self.observed)
        for name in self.latent:
            total = total + self.log_p(name) - self.log_q(name)
        return total

    def analytic_kl(self, name: str) -> torch.Tensor | None:
        """KL(q || p) of latent site ``name`` in closed form (times its scale), or ``None``.

        ``None`` when no closed form is registered, or when replacing log p - log q by its
        expectation would be biased: that is the case unless every model site sampled before
        ``name`` was also sampled before it by the guide (otherwise p's parameters may depend on a
        guide sample drawn *after* z_name, which the expectation over z_name must not fix).
        """
        model_order = list(self.model_sites)
        guide_order = list(self.guide_sites)
        before_model = {n for n in model_order[: model_order.index(name)] if n in self.latent}
        before_guide = set(guide_order[: guide_order.index(name)])
        if not before_model <= before_guide:
            return None
        q_site, p_site = self.guide_sites[name], self.model_sites[name]
        q, p = q_site["fn"], p_site["fn"]
        # Some closed forms (torch's Bernoulli KL) do not broadcast batch shapes themselves.
        shape = torch.broadcast_shapes(q.batch_shape, p.batch_shape)
        try:
            kl = kl_divergence(q.expand(shape), p.expand(shape))
        except NotImplementedError:
            return None
        return self.per_datapoint(scale_and_mask(kl, q_site["scale"], q_site["mask"]), q_site, name)


def check_sites_agree(model_sites: dict[str, dict], guide_sites: dict[str, dict]) -> None:
    """Raise :class:`ConfigError` naming every site where model and guide disagree."""
    latent = {n for n, s in model_sites.items() if not s["is_observed"]}
    problems = []
    missing = sorted(latent - set(guide_sites))
    if missing:
        problems.append(f"latent site(s) {missing} are sampled by the model but not by the guide")
    extra = sorted(set(guide_sites) - latent)
    if extra:
        problems.append(f"guide site(s) {extra} are not latent sites of the model")
    for name in sorted(latent & set(guide_sites)):
        p_shape, q_shape = model_sites[name]["fn"].event_shape, guide_sites[name]["fn"].event_shape
        if p_shape != q_shape:
            problems.append(
                f"site {name!r} has event shape {tuple(p_shape)} in the model, {tuple(q_shape)} in the guide"
            )
    if problems:
        raise ConfigError("model and guide do not match: " + "; ".join(problems))


def plate_dims(model) -> int:
    """Number of plate dimensions of a run, counting the particle plate left of the model's own."""
    return getattr(model, "max_plate_nesting", 1) + 1


def run_pair(model, guide, x: torch.Tensor, num_particles: int = 1) -> PairTrace:
    """Trace ``guide(x)`` and ``model(x)`` replayed on its samples, ``num_particles`` per datapoint.

    The model checks ``x`` first, so bad data is reported in the model's terms rather than as a
    failure deep inside the guide's networks. Parameter statements are skipped unless a Pyro handler
    outside this call may be collecting them (:func:`~vaezoo.zoo_module.param_statements_skipped`).
    """
    check = getattr(model, "check_x", None)
    if check is not None:
        check(x)
    dims = plate_dims(model)
    with param_statements_skipped(), pyro.plate(PARTICLES, num_particles, dim=-dims):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return PairTrace(model_trace, guide_trace, num_particles, x.shape[0], dims)
