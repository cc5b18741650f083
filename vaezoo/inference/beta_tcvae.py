"""beta-TCVAE: the ELBO's KL split into index-code MI, total correlation and dimension-wise KL."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.distributions import Independent, Normal

from vaezoo.errors import ConfigError
from vaezoo.inference.aggregate import check_real_latents, site_matrix
from vaezoo.inference.objective import Objective
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class BetaTCVAEConfig:
    dataset_size: int = field(
        default=60000,
        metadata={"help": "N, the number of training datapoints the batches are drawn from", "min": 2},
    )
    alpha: float = field(
        default=1.0, metadata={"help": "weight of the index-code mutual information", "min": 0}
    )
    beta: float = field(default=6.0, metadata={"help": "weight of the total correlation", "min": 0})
    gamma: float = field(default=1.0, metadata={"help": "weight of the dimension-wise KL", "min": 0})
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "epochs over which the three latent terms rise linearly from 0", "min": 0},
    )


def mws_log_density(log_q: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """Minibatch-weighted estimate of log q(z_i), shape ``(..., M)``, from the table
    ``log_q[..., i, j] = log q(z_i | x_j)``.

    z_i was drawn from q(z | x_i); the other M - 1 datapoints of the batch are a uniform draw without
    replacement from the remaining N - 1. Then

        q^(z_i) = (1/N) q(z_i | x_i) + (N - 1) / (N (M - 1)) sum_{j != i} q(z_i | x_j)

    has expectation over the batch exactly q(z_i) = (1/N) sum_n q(z_i | x_n); the log is taken of it.
    """
    m = log_q.shape[-1]
    n = dataset_size
    if m < 2 or n < m:
        raise ConfigError(
            f"the minibatch-weighted estimator needs 2 <= batch size <= dataset_size, got batch {m} "
            f"and dataset_size {n}; set dataset_size to the number of training datapoints"
        )
    own = torch.full((m,), -math.log(n), dtype=log_q.dtype, device=log_q.device)
    others = math.log(n - 1) - math.log(n) - math.log(m - 1)
    weights = torch.full((m, m), others, dtype=log_q.dtype, device=log_q.device)
    weights = weights - torch.diag(weights.diagonal()) + torch.diag(own)
    return (log_q + weights).logsumexp(-1)


@register_objective("beta_tcvae", BetaTCVAEConfig)
class BetaTCVAE(Objective):
    """L(x_i) = E log p(x_i | z) - alpha MI - beta TC - gamma dimKL (Chen et al. 2018), per datapoint.

    With z_i ~ q(z | x_i) for datapoint i of a batch of M, D latent dimensions and a factorized guide
    q(z | x) = prod_d q(z_d | x), the Monte Carlo KL term log q(z_i | x_i) - log p(z_i) telescopes into

    - index-code MI: log q(z_i | x_i) - log q(z_i),
    - total correlation: log q(z_i) - sum_d log q(z_id),
    - dimension-wise KL: sum_d log q(z_id) - log p(z_i),

    where q(z) and the marginals q(z_d) of the aggregate posterior are estimated from the batch by
    :func:`mws_log_density` (dataset size N a config field). The three terms sum to the ELBO's KL
    term exactly for every sample, so alpha = beta = gamma = 1 is the ELBO. ``per_datapoint`` returns
    the objective of each datapoint given the rest of its batch: the terms of datapoint i depend on
    every x_j of the batch (through q(z_i | x_j)), so the values change with the batch a datapoint is
    in, and their mean is the training objective. :meth:`bound` is the plain per-datapoint ELBO, a
    lower bound on log p(x) that does not depend on the batch. ``kl_warmup`` scales all three
    terms.

    Needs a model with one real-valued latent site and a guide whose distribution on it is a diagonal
    Normal (the dimension-wise marginals q(z_d | x_j) must be available in closed form); anything else
    is refused with a :class:`ConfigError`.

    **Deviation from the paper.** Its printed minibatch-weighted estimator,
    log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M), is the log of (1/N) times the batch mean of
    q(z_i | x_j), whose expectation is about q(z_i) / N; it is off by about log N in log q(z) and by
    about D log N in sum_d log q(z_d), which moves MI, TC and dimKL by constants (no gradient, but
    the reported numbers are wrong). The importance weights of :func:`mws_log_density` (1/N on the
    datapoint's own term) are unbiased for q(z_i), as the weighting in the paper's derivation intends.

    References:
        - Chen, Li, Grosse & Duvenaud (2018), Isolating Sources of Disentanglement in Variational
          Autoencoders, NeurIPS.
        - Hoffman & Johnson (2016), ELBO surgery, NIPS Workshop on Advances in Approximate Bayesian
          Inference.
    """

    def latent_weight(self, progress: float = math.inf) -> float:
        """The warm-up factor min(1, progress / kl_warmup); beta weights only the TC term."""
        warmup = self.config.kl_warmup
        return 1.0 if warmup <= 0 else min(1.0, max(progress, 0.0) / warmup)

    def terms(self, model, guide, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``recon``, ``mi``, ``tc``, ``dim_kl`` (and ``log_q``, ``log_p`` of z) per particle and
        datapoint, each ``(k, batch)``; ``mi + tc + dim_kl == log_q - log_p``."""
        c = self.config
        pair = run_pair(model, guide, x, c.num_particles)
        name = self._check(pair)
        site = pair.guide_sites[name]
        normal = site["fn"].base_dist if isinstance(site["fn"], Independent) else site["fn"]
        k, m = c.num_particles, x.shape[0]
        z = site_matrix(site, site["value"], k, m)
        loc = site_matrix(site, normal.loc.expand(site["value"].shape), k, m)
        scale = site_matrix(site, normal.scale.expand(site["value"].shape), k, m)
        # log q(z_id | x_jd): rows i are samples, columns j the datapoints whose q evaluates them.
        per_dim = Normal(loc.unsqueeze(1), scale.unsqueeze(1)).log_prob(z.unsqueeze(2))
        log_qz = mws_log_density(per_dim.sum(-1), c.dataset_size)
        log_prod = mws_log_density(per_dim.movedim(-1, 1), c.dataset_size).sum(1)
        log_q = per_dim.sum(-1).diagonal(dim1=-2, dim2=-1)
        log_p = pair.log_p(name)
        return {
            "recon": sum(pair.log_p(n) for n in pair.observed),
            "mi": log_q - log_qz,
            "tc": log_qz - log_prod,
            "dim_kl": log_prod - log_p,
            "log_q": log_q,
            "log_p": log_p,
        }

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        c = self.config
        t = self.terms(model, guide, x)
        penalty = c.alpha * t["mi"] + c.beta * t["tc"] + c.gamma * t["dim_kl"]
        return (t["recon"] - latent_weight * penalty).mean(0)

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """The per-datapoint ELBO (Monte Carlo KL term), independent of the batch and of N."""
        pair = run_pair(model, guide, x, self.config.num_particles)
        self._check(pair)
        return pair.log_weight().mean(0)

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` if this objective cannot train the pair on batches like ``x``."""
        self._check(run_pair(model, guide, x, 1))
        mws_log_density(torch.zeros(x.shape[0], x.shape[0]), self.config.dataset_size)

    def _check(self, pair: PairTrace) -> str:
        if len(pair.latent) != 1:
            raise ConfigError(
                f"beta_tcvae splits the KL of one latent vector into dimensions, but the model has "
                f"latent sites {pair.latent}; use a model with a single latent site (e.g. 'vae')"
            )
        name = pair.latent[0]
        check_real_latents(pair.model_sites, [name], "beta_tcvae")
        fn = pair.guide_sites[name]["fn"]
        base = fn.base_dist if isinstance(fn, Independent) else fn
        if not isinstance(base, Normal) or (isinstance(fn, Independent) and len(fn.event_shape) != 1):
            raise ConfigError(
                f"beta_tcvae needs a factorized guide, a diagonal Normal on site {name!r}, to evaluate "
                f"the marginals q(z_d | x); this guide gives {type(fn).__name__}. Use guide 'amortized'"
            )
        return name
