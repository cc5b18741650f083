"""Objectives, estimators and training: objects that take a (model, guide) pair and a batch.

Importing this package registers every objective (:func:`~vaezoo.registry.list_objectives`). Estimators of
log p(x) (:func:`log_likelihood`, :func:`ais_log_likelihood`) and of the block-spin model's free
energy (:func:`free_energy_bound`, :func:`exact_bound`, :func:`exact_kl_l4`) work with any guide.
"""

from vaezoo.inference.adversarial_autoencoder import AAEConfig, AdversarialAutoencoder
from vaezoo.inference.adversary import (
    Adversary,
    AdversaryConfig,
    Discriminator,
    discriminator_loss,
    generator_loss,
)
from vaezoo.inference.ais import AISLogLikelihood, ais_log_likelihood, schedule
from vaezoo.inference.baselines import AverageBaseline, Baseline, NVILBaseline
from vaezoo.inference.beta_tcvae import BetaTCVAE, BetaTCVAEConfig, mws_log_density
from vaezoo.inference.code_prior import code_maps, code_nll, fit_code_prior
from vaezoo.inference.compiled import CompiledLoss
from vaezoo.inference.elbo import ELBO, ELBOConfig
from vaezoo.inference.exact_kl import ExactKL, exact_bound, exact_kl_l4
from vaezoo.inference.fit import fit, mean_bound, parameters
from vaezoo.inference.free_bits import FreeBits, FreeBitsConfig, site_dims
from vaezoo.inference.free_energy import (
    FreeEnergyBound,
    exact_free_energy,
    fit_bound_guide,
    free_energy_bound,
    mean_field_free_energy,
)
from vaezoo.inference.hmc import HMC, HMCState
from vaezoo.inference.importance import Estimate, LogLikelihood, log_likelihood
from vaezoo.inference.info_vae import InfoVAE, InfoVAEConfig, kernel_matrix, mmd_unbiased
from vaezoo.inference.iwae import IWAE, IWAEConfig
from vaezoo.inference.likelihood_free import LFVI, LFVIConfig
from vaezoo.inference.messengers import ScaleLatents, ScaleObserved
from vaezoo.inference.multimodal_elbo import MultimodalELBO, MultimodalELBOConfig, training_subsets
from vaezoo.inference.multistage import MultiStage, MultiStageConfig
from vaezoo.inference.nvae_elbo import NVAEObjective, NVAEObjectiveConfig, balance_coefficients, group_kls
from vaezoo.inference.objective import Objective
from vaezoo.inference.potential import log_joint
from vaezoo.inference.reverse_kl import fit_free_energy, reverse_kl_surrogate
from vaezoo.inference.score_function import NonReparam, Reparam, ScoreFunction, ScoreFunctionConfig
from vaezoo.inference.stepwise import Stepwise, StepwiseConfig
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.inference.vae_gan import VAEGAN, VAEGANConfig
from vaezoo.inference.vq_objective import VQ, VQConfig, quantizations, site_quantizations

__all__ = [
    "VQ",
    "VQConfig",
    "code_maps",
    "code_nll",
    "fit_code_prior",
    "quantizations",
    "site_quantizations",
    "AdversarialAutoencoder",
    "AAEConfig",
    "VAEGAN",
    "VAEGANConfig",
    "Adversary",
    "AdversaryConfig",
    "Discriminator",
    "discriminator_loss",
    "generator_loss",
    "MultimodalELBO",
    "MultimodalELBOConfig",
    "training_subsets",
    "Estimate",
    "CompiledLoss",
    "Objective",
    "ELBO",
    "ELBOConfig",
    "IWAE",
    "IWAEConfig",
    "LFVI",
    "LFVIConfig",
    "BetaTCVAE",
    "BetaTCVAEConfig",
    "mws_log_density",
    "InfoVAE",
    "InfoVAEConfig",
    "kernel_matrix",
    "mmd_unbiased",
    "ScoreFunction",
    "ScoreFunctionConfig",
    "Baseline",
    "AverageBaseline",
    "NVILBaseline",
    "Reparam",
    "NonReparam",
    "ScaleLatents",
    "ScaleObserved",
    "PairTrace",
    "run_pair",
    "log_joint",
    "LogLikelihood",
    "log_likelihood",
    "AISLogLikelihood",
    "ais_log_likelihood",
    "schedule",
    "HMC",
    "HMCState",
    "fit",
    "mean_bound",
    "parameters",
    "FreeEnergyBound",
    "free_energy_bound",
    "fit_bound_guide",
    "fit_free_energy",
    "reverse_kl_surrogate",
    "exact_bound",
    "ExactKL",
    "exact_kl_l4",
    "exact_free_energy",
    "mean_field_free_energy",
    "NVAEObjective",
    "NVAEObjectiveConfig",
    "balance_coefficients",
    "group_kls",
    "Stepwise",
    "StepwiseConfig",
    "MultiStage",
    "MultiStageConfig",
    "FreeBits",
    "FreeBitsConfig",
    "site_dims",
]
