"""vaezoo: deep latent-variable models as Pyro probabilistic programs, with swappable guides and objectives.

>>> from vaezoo import VAE, ELBO, fit, log_likelihood
>>> model = VAE(z_dim=10)
>>> guide = model.default_guide()
"""

from vaezoo import checkpoint, data, guides, inference, models
from vaezoo.errors import CheckpointError, ConfigError, DataError, TrainingError, VaezooError
from vaezoo.guides import AmortizedNormal, ExactPosterior
from vaezoo.inference import ELBO, fit, log_likelihood
from vaezoo.models import VAE, LinearGaussian
from vaezoo.registry import build_guide, build_model, build_objective, register_guide, register_model

__version__ = "0.1.0"

__all__ = [
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
    "log_likelihood",
    "models",
    "register_guide",
    "register_model",
]
