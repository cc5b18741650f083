"""Generative models p(x, z). Importing this package registers every model."""

from vaezoo.models import block_spin, hvae, ladder, markov_hvae, vlae  # noqa: F401  (registers them)
from vaezoo.models.base import LatentVariableModel
from vaezoo.models.linear_gaussian import LinearGaussian, LinearGaussianConfig
from vaezoo.models.vae import VAE, VAEConfig

__all__ = ["LatentVariableModel", "LinearGaussian", "LinearGaussianConfig", "VAE", "VAEConfig"]
