"""Objectives, estimators and training: objects that take a (model, guide) pair and a batch."""

from vaezoo.inference import ais, hmc  # noqa: F401  (AIS, HMC)
from vaezoo.inference.elbo import ELBO, ELBOConfig
from vaezoo.inference.fit import fit
from vaezoo.inference.importance import LogLikelihood, log_likelihood
from vaezoo.inference.iwae import IWAE, IWAEConfig
from vaezoo.inference.messengers import ScaleLatents
from vaezoo.inference.objective import Objective
from vaezoo.inference.score_function import NonReparam, Reparam, ScoreFunction, ScoreFunctionConfig
from vaezoo.inference.traces import PairTrace, run_pair

__all__ = [
    "ELBO",
    "ELBOConfig",
    "IWAE",
    "IWAEConfig",
    "LogLikelihood",
    "NonReparam",
    "Objective",
    "PairTrace",
    "Reparam",
    "ScaleLatents",
    "ScoreFunction",
    "ScoreFunctionConfig",
    "fit",
    "log_likelihood",
    "run_pair",
]
