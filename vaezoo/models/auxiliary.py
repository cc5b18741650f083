"""Auxiliary likelihoods: training signals some papers add for a model's intermediate images.

Some models produce their image in stages (a coarse image then a sharpened one; a chain of images
each drawn from the last) and their papers train every stage against the data. Those extra terms
are not observations of a generative model: one x is observed once, by the final stage, and the
ELBO of that program is what :meth:`~vaezoo.inference.objective.Objective.bound` reports. The
intermediate distributions ride along on the observed site instead, in
``infer[AUXILIARY]``, in stage order; objectives that implement a paper's training loss read them
there (:mod:`vaezoo.inference.stepwise`, :mod:`vaezoo.inference.multistage`) without knowing the
model, and every other objective ignores them. Each has the observed site's batch and event shapes,
so it scores the same x.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

#: Key of a model's observed ``"x"`` site's ``infer`` dict holding its auxiliary distributions.
AUXILIARY = "auxiliary_likelihoods"


def observe_x(x: torch.Tensor, fn: dist.Distribution, auxiliary: Sequence[dist.Distribution] = ()) -> None:
    """``pyro.sample("x", fn, obs=x)``, carrying the earlier stages' distributions ``auxiliary`` along."""
    pyro.sample("x", fn, obs=x, infer={AUXILIARY: tuple(auxiliary)})


__all__ = ["AUXILIARY", "observe_x"]
