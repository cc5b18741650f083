"""Studies built from models, guides and inference objects: the amortization gap, layer diagnostics,
gradient variance, predictive draws, the block-spin perturbations and training recipes, and neural
importance sampling and MCMC with a model as the proposal. May
import every floor below."""

from vaezoo.analysis.block_spin_training import bound_guide, train_block_spin
from vaezoo.analysis.diagnostics import (
    LayerReport,
    PosteriorMeans,
    active_units,
    explained_variance,
    layer_grid,
    layer_kl,
    layer_report,
    posterior_means,
    unit_activity,
)
from vaezoo.analysis.disentanglement import MIGResult, SAPResult, mig, representation, sap
from vaezoo.analysis.gap import GapTable, amortization_gap, elbo_estimate
from vaezoo.analysis.gradient_variance import GradientStats, gradient_variance
from vaezoo.analysis.lfvi_study import LFVIStudy, LFVIStudyResult, lfvi_study
from vaezoo.analysis.neural_chains import NeuralMCMCResult, neural_mcmc
from vaezoo.analysis.neural_importance import NeuralISResult, WeightedEstimate, neural_importance_sampling
from vaezoo.analysis.perturb import LevelPerturbation, Perturbation, perturb, perturbation_grid
from vaezoo.analysis.posterior_error import PosteriorError, posterior_error
from vaezoo.analysis.predictive import prior_samples, reconstructions
from vaezoo.analysis.proposals import BoltzmannProposal, ModelProposal
from vaezoo.analysis.site_gap import SiteGaps, site_gaps

__all__ = [
    "LFVIStudy",
    "LFVIStudyResult",
    "lfvi_study",
    "PosteriorError",
    "posterior_error",
    "GapTable",
    "amortization_gap",
    "elbo_estimate",
    "SiteGaps",
    "site_gaps",
    "LayerReport",
    "PosteriorMeans",
    "layer_kl",
    "posterior_means",
    "unit_activity",
    "active_units",
    "explained_variance",
    "layer_report",
    "layer_grid",
    "GradientStats",
    "gradient_variance",
    "prior_samples",
    "reconstructions",
    "Perturbation",
    "LevelPerturbation",
    "perturb",
    "perturbation_grid",
    "train_block_spin",
    "bound_guide",
    "ModelProposal",
    "BoltzmannProposal",
    "WeightedEstimate",
    "NeuralISResult",
    "neural_importance_sampling",
    "NeuralMCMCResult",
    "neural_mcmc",
    "MIGResult",
    "SAPResult",
    "mig",
    "sap",
    "representation",
]
