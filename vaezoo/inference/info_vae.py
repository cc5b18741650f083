"""InfoVAE / MMD-VAE: the ELBO with a reweighted KL plus an MMD between aggregate posterior and prior."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from pyro import poutine

from vaezoo.errors import ConfigError
from vaezoo.inference.aggregate import check_real_latents, latent_matrix
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.objective import Objective
from vaezoo.inference.traces import _sample_sites, particle_plate, run_pair
from vaezoo.registry import register_objective

KERNELS = ("gaussian", "imq")


@dataclass(frozen=True)
class InfoVAEConfig:
    alpha: float = field(
        default=1.0,
        metadata={"help": "the paper's alpha: the KL is weighted 1 - alpha (1: MMD-VAE)", "min": 0, "max": 1},
    )
    lam: float = field(
        default=1000.0,
        metadata={"help": "the paper's lambda: the MMD term is weighted alpha + lambda - 1", "min": 0},
    )
    kernel: Literal["gaussian", "imq"] = field(
        default="gaussian", metadata={"help": "MMD kernel: gaussian or inverse multiquadratic"}
    )
    bandwidth: float = field(
        default=1.0,
        metadata={"help": "kernel length scale per latent dimension (scaled by sqrt(D))", "above": 0},
    )
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    """k(a_i, b_j) for ``a`` ``(..., n, D)`` and ``b`` ``(..., m, D)``, shape ``(..., n, m)``.

    With r^2 the squared Euclidean distance between a and b and squared length scale
    l^2 = D * bandwidth^2 (so one bandwidth suits any D): gaussian exp(-r^2 / (2 l^2)); inverse
    multiquadratic c / (c + r^2), c = 2 l^2.
    """
    if bandwidth <= 0:
        raise ConfigError(f"the MMD kernel bandwidth must be > 0, got {bandwidth}")
    sq = (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)
    scale2 = a.shape[-1] * bandwidth**2
    if kernel == "gaussian":
        return torch.exp(-sq / (2 * scale2))
    if kernel == "imq":
        return 2 * scale2 / (2 * scale2 + sq)
    raise ConfigError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def mmd_unbiased(a: torch.Tensor, b: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    """The unbiased estimate (U-statistic) of MMD^2 between the samples ``a`` ``(..., n, D)`` and
    ``b`` ``(..., m, D)``: mean_{i != i'} k(a_i, a_i') + mean_{j != j'} k(b_j, b_j') - 2 mean k(a_i, b_j).

    Unbiased, so it can be negative when the distributions are close. Needs n, m >= 2.
    """
    n, m = a.shape[-2], b.shape[-2]
    if n < 2 or m < 2:
        raise ConfigError(f"the unbiased MMD needs at least 2 samples on each side, got {n} and {m}")

    def within(s: torch.Tensor, size: int) -> torch.Tensor:
        g = kernel_matrix(s, s, kernel, bandwidth)
        return (g.sum((-2, -1)) - g.diagonal(dim1=-2, dim2=-1).sum(-1)) / (size * (size - 1))

    cross = kernel_matrix(a, b, kernel, bandwidth).mean((-2, -1))
    return within(a, n) + within(b, m) - 2 * cross


@register_objective("info_vae", InfoVAEConfig)
class InfoVAE(Objective):
    """L = E_q log p(x | z) - (1 - alpha) KL(q(z | x) || p(z)) - (alpha + lambda - 1) MMD^2(q(z), p(z)).

    Zhao, Song & Ermon's InfoVAE objective with the MMD divergence: alpha = 1 is the MMD-VAE, alpha = 0
    and lambda = 1 the ELBO. The aggregate posterior q(z) = E_p(x) q(z | x) is represented by the batch:
    one z_i ~ q(z | x_i) per datapoint and particle; the prior by as many ancestral samples of the
    model's latents (a hierarchical prior is sampled jointly, and a learned prior gets the MMD's
    gradient). Every latent site is concatenated into one vector. MMD^2 is the unbiased estimate of
    :func:`mmd_unbiased`, computed per particle and averaged.

    **What** ``per_datapoint`` **returns.** The MMD is a property of the whole batch and has no
    per-datapoint share. ``per_datapoint`` returns, for datapoint i, its own reconstruction and KL
    terms plus the batch's MMD term (the same number for every datapoint of the batch), so the mean
    over the batch is the training objective; one datapoint's value depends on the batch it came in
    (and needs a batch of at least 2). :meth:`bound` is the plain per-datapoint ELBO, a lower bound
    on log p(x) for each datapoint alone: what evaluation reports and importance sampling compares.
    The latent weight (``latent_weight``) multiplies the KL and MMD terms alike.

    **Deviation.** Zhao et al. weight the divergence by alpha + lambda - 1 and allow any alpha; here
    alpha lies in [0, 1] so the KL weight 1 - alpha is never negative, and alpha + lambda >= 1 is
    required (a negative MMD weight would reward mismatching the prior).

    References:
        - Zhao, Song & Ermon (2019), InfoVAE: Balancing Learning and Inference in Variational
          Autoencoders, AAAI (arXiv 2017).
        - Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012), A Kernel Two-Sample Test, JMLR.
    """

    def __init__(self, config: InfoVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.mmd_weight < 0:
            raise ConfigError(
                f"info_vae weights the MMD by alpha + lam - 1 = {self.mmd_weight}, which must be >= 0; "
                f"raise lam to at least {1 - self.config.alpha}"
            )
        self._elbo = ELBO(analytic_kl=self.config.analytic_kl)

    @property
    def mmd_weight(self) -> float:
        return self.config.alpha + self.config.lam - 1.0

    def mmd(self, model, guide, x: torch.Tensor, pair=None) -> torch.Tensor:
        """MMD^2 between the batch's posterior samples and prior samples, one per particle, ``(k,)``."""
        k, m = self.config.num_particles, x.shape[0]
        pair = pair if pair is not None else run_pair(model, guide, x, k)
        check_real_latents(pair.guide_sites, pair.latent, "info_vae")
        if torch.is_grad_enabled() and any(p.requires_grad for p in guide.parameters()):
            detached = [n for n in pair.latent if not pair.guide_sites[n]["value"].requires_grad]
            if detached:
                raise ConfigError(
                    f"info_vae's MMD needs samples that carry the gradient to the guide, but "
                    f"{type(guide).__name__} returns site(s) {detached} detached; use 'elbo' with this guide"
                )
        with particle_plate(model, k):
            prior_sites = _sample_sites(poutine.trace(model).get_trace(x))
        check_real_latents(prior_sites, pair.latent, "info_vae")
        posterior = latent_matrix(pair.guide_sites, pair.latent, k, m)
        prior = latent_matrix(prior_sites, pair.latent, k, m)
        return mmd_unbiased(posterior, prior, self.config.kernel, self.config.bandwidth)

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` if this objective cannot train the pair on batches like ``x``."""
        with torch.enable_grad():
            self.mmd(model, guide, x)

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        pair = run_pair(model, guide, x, self.config.num_particles)
        recon = sum(pair.log_p(n) for n in pair.observed)
        kl = recon - self._elbo.particle_terms(pair)
        own = (recon - latent_weight * (1.0 - self.config.alpha) * kl).mean(0)
        shared = latent_weight * self.mmd_weight * self.mmd(model, guide, x, pair).mean()
        return own - shared

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """The per-datapoint ELBO, with ``num_particles`` samples; no batch-level term."""
        return self._elbo.particle_terms(run_pair(model, guide, x, self.config.num_particles)).mean(0)
