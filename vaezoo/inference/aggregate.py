"""The batch's latent samples as one flat vector per particle and datapoint, for objectives that
compare samples across datapoints (the aggregate posterior q(z) = E_p(x) q(z | x) of a minibatch).

Per-datapoint bounds read a site through :meth:`~vaezoo.inference.traces.PairTrace.log_p`; batch-level
terms (total correlation, MMD) need z_i evaluated against x_j, so they need the latent values laid out
as ``(k, batch, D)`` tensors with every latent site concatenated.
"""

from __future__ import annotations

import torch
from torch.distributions import constraints

from vaezoo.errors import ConfigError


def _is_real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def check_real_latents(sites: dict[str, dict], names: list[str], who: str) -> None:
    """Raise :class:`ConfigError` unless every site in ``names`` has real support and a pathwise sample."""
    bad = [n for n in names if not _is_real(sites[n]["fn"].support) or not sites[n]["fn"].has_rsample]
    if bad:
        raise ConfigError(
            f"{who} compares latent samples across the batch in R^D, but site(s) {bad} are discrete, "
            "constrained or not reparameterizable; use it with a model whose latents are real-valued "
            "(e.g. 'vae', 'hvae') or use 'elbo'"
        )


def site_matrix(site: dict, value: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """``value`` (a tensor shaped like the site's sample) as ``(k, batch, D)``.

    The site may have no plate but the particle plate (leftmost) and the data plate (rightmost batch
    dim); a site inside further plates has no single vector per datapoint that these objectives
    could compare, and is refused.
    """
    event = len(site["fn"].event_shape)
    batch_dims = value.dim() - event
    data = [f for f in site["cond_indep_stack"] if f.name == "data"]
    if batch_dims > 2 or not data or data[0].dim != -1:
        raise ConfigError(
            f"site {site['name']!r} sits in plates besides the particle and data plates (batch shape "
            f"{tuple(value.shape[:batch_dims])}); batch-level objectives need one latent vector per "
            "datapoint"
        )
    value = value.reshape((1,) * (2 - batch_dims) + tuple(value.shape))
    return value.expand(k, batch, *value.shape[2:]).reshape(k, batch, -1)


def latent_matrix(sites: dict[str, dict], names: list[str], k: int, batch: int) -> torch.Tensor:
    """The values of sites ``names``, concatenated: one row of length D per particle and datapoint,
    shape ``(k, batch, D)``."""
    return torch.cat([site_matrix(sites[n], sites[n]["value"], k, batch) for n in names], dim=-1)
