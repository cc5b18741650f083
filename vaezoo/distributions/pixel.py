"""Per-pixel image likelihoods: Bernoulli for binary images, Gaussian or Laplace for real-valued ones."""

from __future__ import annotations

from typing import Literal

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from vaezoo.distributions.bernoulli import bernoulli

PixelLikelihood = Literal["bernoulli", "gaussian", "laplace"]

#: The location-scale families, by name: a Gaussian scores squared errors (l2), a Laplace absolute ones (l1).
LOCATION_SCALE = {"gaussian": dist.Normal, "laplace": dist.Laplace}

#: Added to every softplus scale, so a learned scale cannot collapse to zero on constant pixels.
MIN_SCALE = 1e-3


def pixel_scale(raw_scale: torch.Tensor) -> torch.Tensor:
    """softplus(raw) + :data:`MIN_SCALE`: the positive per-pixel scale a model learns as ``raw_scale``."""
    return F.softplus(raw_scale) + MIN_SCALE


def pixel_likelihood(
    kind: str, out: torch.Tensor, raw_scale: torch.Tensor | None, event_dims: int
) -> dist.Distribution:
    """p(x | out) with the last ``event_dims`` dimensions of ``out`` forming one image.

    ``kind="bernoulli"``: ``out`` are logits (``raw_scale`` unused). ``"gaussian"`` / ``"laplace"``:
    ``out`` is the location and :func:`pixel_scale` of ``raw_scale`` the standard deviation / the
    Laplace scale b. In every case the distribution's ``mean`` is the image the model predicts.
    """
    if kind == "bernoulli":
        return bernoulli(out, event_dims)
    if raw_scale is None:
        raise ValueError(f"a {kind} likelihood needs a raw_scale")
    return LOCATION_SCALE[kind](out, pixel_scale(raw_scale)).to_event(event_dims)


__all__ = ["LOCATION_SCALE", "MIN_SCALE", "PixelLikelihood", "pixel_likelihood", "pixel_scale"]
