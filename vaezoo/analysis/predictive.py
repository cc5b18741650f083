"""Drawing from a trained model: prior samples and reconstructions of the observed site."""

from __future__ import annotations

import torch
from pyro import poutine

from vaezoo.inference.traces import run_pair
from vaezoo.nets import evaluating


@torch.no_grad()
def prior_samples(model, n: int, mean: bool = True) -> torch.Tensor:
    """``n`` draws of x from p(x) = ∫ p(x | z) p(z) dz, shape ``(n, *x_shape)``.

    With ``mean=True`` the likelihood's mean (pixel probabilities for a Bernoulli decoder) is
    returned for the sampled z, as papers show VAE samples; otherwise a draw of x itself.

    A model whose x feeds back into its own generative process (the VRNN) draws with its
    ``generate(n, mean)`` method, since running it with its observation removed would feed the
    placeholder data to that process.
    """
    generate = getattr(model, "generate", None)
    if callable(generate):
        with evaluating(model):
            return generate(n, mean=mean)
    with evaluating(model):
        trace = poutine.trace(poutine.uncondition(model)).get_trace(model.example_x(n))
    site = trace.nodes["x"]
    return site["fn"].mean if mean else site["value"]


@torch.no_grad()
def reconstructions(model, guide, x: torch.Tensor) -> torch.Tensor:
    """E[x | z] for one z ~ q(z | x) per datapoint, shape ``x.shape``."""
    with evaluating(model, guide):
        pair = run_pair(model, guide, x, 1)
    return pair.model_sites["x"]["fn"].mean.reshape(x.shape)
