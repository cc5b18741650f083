"""A distribution known only through its sampler x = g(eps), eps ~ s: the observation of an implicit model.

A simulator (Diggle & Gratton 1984; Mohamed & Lakshminarayanan 2016) can be run forward but has no
density that can be evaluated. In Pyro an observed ``pyro.sample`` site still carries a distribution
object; :class:`Simulator` is that object for a simulator: ``sample``/``rsample`` push fresh noise
through ``g``, and ``log_prob`` raises :class:`~vaezoo.errors.ConfigError`, so any code that tries to
score the observations (an ELBO, IWAE, importance sampling, an HMC potential, Pyro's own
``Trace_ELBO``) stops with a message naming the fix instead of silently using a density.

References:
    - Diggle & Gratton (1984), Monte Carlo Methods of Inference for Implicit Statistical Models,
      JRSS B 46.
    - Mohamed & Lakshminarayanan (2016), Learning in Implicit Generative Models, arXiv:1610.03483.
    - Tran, Ranganath & Blei (2017), Hierarchical Implicit Models and Likelihood-Free Variational
      Inference, NIPS.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions import TorchDistribution, constraints

from vaezoo.errors import ConfigError

_EMPTY = torch.Size()


class Simulator(TorchDistribution):
    """x = g(eps), eps ~ ``noise``: sampled by running ``g``; no density.

    :param simulate: ``g``, mapping noise of shape ``(*sample, *batch, *event)`` to values of the same
        shape. It carries its inputs (latents, parameters) in its closure and must broadcast them
        against extra leading dimensions, as particle plates add.
    :param noise: the distribution s of eps; its ``batch_shape + event_shape`` is the shape of one
        draw of x (batch dims first).
    :param event_dim: how many trailing dims of that shape form one observation.
    :param who: the model's name, for the error message.

    The noise is drawn inside :meth:`rsample` and is not a Pyro sample site: no guide infers it and
    replaying a trace does not replay it (a simulator's internal randomness, integrated out by the
    model's definition). ``rsample`` is pathwise in whatever ``g``'s inputs carry gradients.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(
        self,
        simulate: Callable[[torch.Tensor], torch.Tensor],
        noise: TorchDistribution,
        event_dim: int,
        who: str = "this model",
    ):
        shape = noise.batch_shape + noise.event_shape
        if not 0 <= event_dim <= len(shape):
            raise ConfigError(f"event_dim must be in [0, {len(shape)}] for noise of shape {tuple(shape)}")
        self.simulate, self.noise, self.who = simulate, noise, who
        cut = len(shape) - event_dim
        super().__init__(shape[:cut], shape[cut:], validate_args=False)

    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        return self.simulate(self.noise.sample(sample_shape))

    def sample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def expand(self, batch_shape, _instance=None) -> Simulator:
        batch_shape = torch.Size(batch_shape)
        noise = self.noise.expand(batch_shape + self.event_shape)
        return Simulator(self.simulate, noise, len(self.event_shape), self.who)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            f"the observed site of {self.who} is a simulator: it can be sampled but has no density, so "
            "an objective or estimator that scores the observations (elbo, iwae, importance-sampled "
            "log p(x), ...) cannot use it; train it with the likelihood-free objective 'lfvi' "
            "(--objective lfvi, or build_objective('lfvi'))"
        )
