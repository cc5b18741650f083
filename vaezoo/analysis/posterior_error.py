"""How far a Gaussian guide is from a known Gaussian posterior: KL, mean and covariance errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vaezoo.errors import ConfigError


@dataclass(frozen=True)
class PosteriorError:
    """Averages over the datapoints of a batch, summed over latent sites.

    - ``kl``: KL(q(z | x) || p(z | x)) in nats, in closed form;
    - ``mean_error``: the Euclidean distance between the two means;
    - ``cov_error``: the Frobenius norm of the difference of the two covariance matrices.
    """

    kl: float
    mean_error: float
    cov_error: float


def as_mvn(d) -> MultivariateNormal:
    """``d`` as a multivariate Normal: a MultivariateNormal, or a Normal with one event dim."""
    if isinstance(d, MultivariateNormal):
        return d
    base = getattr(d, "base_dist", None)
    loc, scale = getattr(base, "loc", None), getattr(base, "scale", None)
    if loc is None or scale is None or getattr(d, "reinterpreted_batch_ndims", None) != 1:
        raise ConfigError(f"the posterior error needs Gaussian vector sites, not {type(d).__name__}")
    return MultivariateNormal(loc, scale_tril=torch.diag_embed(scale.expand_as(loc)))


@torch.no_grad()
def posterior_error(guide_dists: dict, exact: dict) -> PosteriorError:
    """The error of the guide's factors ``guide_dists`` (e.g. ``guide.site_dists(x)``) against the
    exact posterior ``exact`` (e.g. ``model.posterior(x)``), both keyed by site, batched over x."""
    missing = sorted(set(exact) - set(guide_dists))
    if missing:
        raise ConfigError(f"the guide gives no distribution for posterior sites {missing}")
    kl = mean = cov = 0.0
    for name, p in exact.items():
        q, p = as_mvn(guide_dists[name]), as_mvn(p)
        kl += kl_divergence(q, p).mean().item()
        mean += (q.loc - p.loc).norm(dim=-1).mean().item()
        diff = q.covariance_matrix - p.covariance_matrix
        cov += diff.flatten(-2).norm(dim=-1).expand(q.batch_shape).mean().item()
    return PosteriorError(kl, mean, cov)
