"""The exact posterior as a guide, for models that know it in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class ExactPosteriorConfig:
    pass


@register_guide("exact", ExactPosteriorConfig)
class ExactPosterior(BoundGuide):
    """q(z | x) = p(z | x), read from the model's ``posterior(x)`` method.

    Sampling the true posterior makes every importance weight p(x, z) / q(z | x) equal p(x), so
    the ELBO, IWAE bounds and importance-sampled log-likelihood all collapse onto the exact value:
    the sharpest test of those estimators (see ``tests/test_ground_truth.py``).

    Available for conjugate models such as :class:`~vaezoo.models.linear_gaussian.LinearGaussian`.
    The guide has no parameters of its own; it follows the model's current parameters.
    """

    def __init__(self, model, config: ExactPosteriorConfig | dict | None = None, **overrides):
        super().__init__(model)
        if not callable(getattr(model, "posterior", None)):
            raise ConfigError(
                f"guide 'exact' needs a model with a closed-form posterior(x) method; "
                f"{type(model).__name__} has none. Use guide 'amortized' instead"
            )
        self.config = resolve(ExactPosteriorConfig, config, overrides)

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            for name, d in self.model.posterior(x).items():
                pyro.sample(name, d)
