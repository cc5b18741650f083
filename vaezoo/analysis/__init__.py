"""Studies built from models, guides and inference objects: the amortization gap, layer diagnostics,
gradient variance, predictive draws and the block-spin perturbations. May import every floor below."""

from vaezoo.analysis import diagnostics, perturb  # noqa: F401
from vaezoo.analysis.gap import GapTable, amortization_gap
from vaezoo.analysis.gradient_variance import GradientStats, gradient_variance
from vaezoo.analysis.predictive import prior_samples, reconstructions

__all__ = [
    "GapTable",
    "GradientStats",
    "amortization_gap",
    "gradient_variance",
    "prior_samples",
    "reconstructions",
]
