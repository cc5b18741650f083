"""Objectives, estimators and training: objects that take a (model, guide) pair and a batch."""

from vaezoo.inference.elbo import ELBO, ELBOConfig
from vaezoo.inference.fit import fit
from vaezoo.inference.importance import LogLikelihood, log_likelihood
from vaezoo.inference.messengers import ScaleLatents
from vaezoo.inference.objective import Objective
from vaezoo.inference.predictive import prior_samples, reconstructions
from vaezoo.inference.traces import PairTrace, run_pair

__all__ = [
    "ELBO",
    "ELBOConfig",
    "LogLikelihood",
    "Objective",
    "PairTrace",
    "ScaleLatents",
    "fit",
    "log_likelihood",
    "prior_samples",
    "reconstructions",
    "run_pair",
]
