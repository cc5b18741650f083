"""Running a model/guide pair over vectorized particles and reading per-datapoint log densities.

Every objective and estimator in :mod:`vaezoo.inference` starts here: the guide is traced under an
outer ``pyro.plate("particles", k)`` placed left of the model's own plates, the model is replayed on
the guide's samples, and :class:`PairTrace` turns the two traces into ``(k, batch)`` tensors, one
per site, so that bounds are formed **per datapoint** (which IWAE and importance sampling need; a
scalar loss as in :class:`pyro.infer.Trace_ELBO` would mix datapoints inside the log-sum-exp).

A run can also be *nested*: started from inside a guide that an objective is already running
under its own particle plate (refinement steps, MCMC potentials). :func:`particle_plate` then
hides the run from every enclosing handler and opens its plate left of every enclosing plate,
under a name of its own (Pyro refuses two plates of one name); :class:`PairTrace` is told that name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.runtime import get_plates
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from vaezoo.errors import ConfigError
from vaezoo.zoo_module import param_statements_skipped

PARTICLES = "particles"
DATA = "data"


@dataclass(frozen=True)
class Particles:
    """The particle plate of a run: its name, size and (negative) dim."""

    name: str
    size: int
    dim: int

    @property
    def lead(self) -> int:
        """Number of plate dims of a site inside the run, particles leftmost."""
        return -self.dim


def plate_dims(model) -> int:
    """Number of plate dimensions of a run, counting the particle plate left of the model's own."""
    return getattr(model, "max_plate_nesting", 1) + 1


def _is_particle_plate(name: str) -> bool:
    return name == PARTICLES or name.startswith(PARTICLES + "@")


@contextlib.contextmanager
def particle_plate(model, size: int, nested: bool = False) -> Iterator[Particles]:
    """Run the body under a particle plate of ``size`` for ``model``, ``pyro.plate("particles")``.

    ``nested=True``: safe inside a guide that already runs under a particle plate. Every enclosing
    handler is blocked (so no inner site reaches an enclosing trace or plate), and the plate sits
    left of every enclosing plate, at a dim Pyro's global allocator would otherwise refuse, named
    ``"particles@<lead>"`` after its dim. Parameter statements are skipped where nothing outside can
    collect them (:func:`~vaezoo.zoo_module.param_statements_skipped`).
    """
    dim = -plate_dims(model)
    name = PARTICLES
    if nested:
        dim = min([dim, *[f.dim - 1 for f in get_plates() if f.dim is not None]])
        name = f"{PARTICLES}@{-dim}"
    with param_statements_skipped(), poutine.block() if nested else contextlib.nullcontext():
        with pyro.plate(name, size, dim=dim):
            yield Particles(name, size, dim)


def enclosing_particles() -> tuple[int, int | None]:
    """``(k, lead)`` of the innermost particle plate around the caller (lead = plate dims, particles
    leftmost), or ``(1, None)`` when a guide runs without one."""
    frames = [f for f in get_plates() if _is_particle_plate(f.name)]
    if not frames:
        return 1, None
    inner = min(frames, key=lambda f: f.dim)  # a nested run's plate is left of the one it runs in
    return inner.size, -inner.dim


def per_datapoint(value: torch.Tensor, site: dict, particles: str = PARTICLES) -> torch.Tensor:
    """Reduce a site's (broadcastable) batch-shaped tensor to shape ``(k, batch)``.

    Sums over every plate dimension but the particle plate (named ``particles``) and the data
    plate, read from the site's ``cond_indep_stack``; used for log densities, KL terms and
    estimator surrogates alike.
    """
    frames = {f.name: f for f in site["cond_indep_stack"]}
    if DATA not in frames:
        raise ConfigError(
            f"sample site {site['name']!r} is outside pyro.plate({DATA!r}); every site of a vaezoo model "
            "and guide must sit inside the data plate so that bounds are per datapoint"
        )
    keep = [frames[DATA].dim] + ([frames[particles].dim] if particles in frames else [])
    n = max(value.dim(), *(-d for d in keep))
    value = value.reshape((1,) * (n - value.dim()) + value.shape)
    other = [d for d in range(-n, 0) if d not in keep]
    if other:
        value = value.sum(other)
    if particles not in frames:
        value = value.unsqueeze(0)
    k = frames[particles].size if particles in frames else 1
    return value.expand(k, frames[DATA].size)


def _sample_sites(trace) -> dict[str, dict]:
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


@dataclass
class PairTrace:
    """The traces of one guide run and the model replayed on it, with ``k`` particles per datapoint.

    ``particles`` names the run's particle plate (see :func:`particle_plate`).
    """

    model_trace: poutine.Trace
    guide_trace: poutine.Trace
    num_particles: int
    batch_size: int
    plate_dims: int
    particles: str = PARTICLES

    def __post_init__(self) -> None:
        self.model_sites = _sample_sites(self.model_trace)
        self.guide_sites = _sample_sites(self.guide_trace)
        self.latent = [n for n, s in self.model_sites.items() if not s["is_observed"]]
        self.observed = [n for n, s in self.model_sites.items() if s["is_observed"]]
        check_sites_agree(self.model_sites, self.guide_sites)

    def per_datapoint(self, value: torch.Tensor, site: dict, name: str) -> torch.Tensor:
        """:func:`per_datapoint` of ``value`` at ``site``, shape ``(k, batch)``."""
        return per_datapoint(value, site, self.particles)

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
        raise ConfigError(
            "model and guide do not match: " + "; ".join(problems) + ". Build the guide from this model "
            "(model.default_guide() or build_guide(name, model)), or pass the model it was built for"
        )


def run_pair(model, guide, x: torch.Tensor, num_particles: int = 1, *, nested: bool = False) -> PairTrace:
    """Trace ``guide(x)`` and ``model(x)`` replayed on its samples, ``num_particles`` per datapoint.

    The model checks ``x`` first, so bad data is reported in the model's terms rather than as a
    failure deep inside the guide's networks. ``nested=True`` runs the pair from inside a guide
    (see :func:`particle_plate`); ``x`` is then the enclosing run's, already checked.
    """
    check = getattr(model, "check_x", None)
    if check is not None and not nested:
        check(x)
    with particle_plate(model, num_particles, nested) as plate:
        guide_trace = poutine.trace(guide).get_trace(x)
        replayed = poutine.trace(poutine.replay(model, trace=guide_trace))
        try:
            model_trace = replayed.get_trace(x)
        except (RuntimeError, ValueError):
            # A guide built for another model hands it latents of the wrong size, and the model's
            # networks fail on them; name the sites instead, from the part of the run that happened.
            done = {n: s for n, s in _sample_sites(replayed.trace).items() if not s["is_observed"]}
            try:
                check_sites_agree(done, {n: s for n, s in _sample_sites(guide_trace).items() if n in done})
            except ConfigError as mismatch:
                raise mismatch from None
            raise
    return PairTrace(model_trace, guide_trace, num_particles, x.shape[0], plate.lead, plate.name)
