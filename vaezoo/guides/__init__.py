"""Guides q(z | x). Importing this package registers every guide."""

from vaezoo.guides import block_spin, bottom_up, hmc_refined, ladder, semi_amortized, vlae  # noqa: F401  (registers them)
from vaezoo.guides.amortized import AmortizedNormal, AmortizedNormalConfig
from vaezoo.guides.exact import ExactPosterior

__all__ = ["AmortizedNormal", "AmortizedNormalConfig", "ExactPosterior"]
