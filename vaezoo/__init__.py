"""vaezoo: deep latent-variable models as Pyro probabilistic programs, with swappable guides and objectives.

>>> from vaezoo import VAE, ELBO, fit, log_likelihood
>>> model = VAE(z_dim=10)
>>> guide = model.default_guide()

:func:`~vaezoo.registry.list_models`, :func:`~vaezoo.registry.list_guides` and
:func:`~vaezoo.registry.list_objectives` show what is registered and which guides serve which model;
every entry is importable from its subpackage (:mod:`vaezoo.models`, :mod:`vaezoo.guides`,
:mod:`vaezoo.inference`).
"""

from vaezoo import analysis, checkpoint, data, guides, inference, models
from vaezoo.errors import CheckpointError, ConfigError, DataError, TrainingError, VaezooError
from vaezoo.guides import AmortizedNormal, ExactPosterior
from vaezoo.inference import ELBO, fit, log_likelihood
from vaezoo.models import VAE, LinearGaussian
from vaezoo.registry import (
    build_guide,
    build_model,
    build_objective,
    list_guides,
    list_models,
    list_objectives,
    register_guide,
    register_model,
    register_objective,
)

__version__ = "0.1.0"

__all__ = [
    "analysis",
    "checkpoint",
    "data",
    "ELBO",
    "VAE",
    "AmortizedNormal",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExactPosterior",
    "LinearGaussian",
    "TrainingError",
    "VaezooError",
    "build_guide",
    "build_model",
    "build_objective",
    "fit",
    "guides",
    "inference",
    "list_guides",
    "list_models",
    "list_objectives",
    "log_likelihood",
    "models",
    "register_guide",
    "register_model",
    "register_objective",
]
