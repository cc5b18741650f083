"""Free bits: the ELBO with each latent site's batch-mean KL clamped below at lambda nats per dimension."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from pyro import poutine

from vaezoo.inference.auxiliary_terms import require_pathwise
from vaezoo.inference.nvae_elbo import group_kls
from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import PairTrace, run_pair
from vaezoo.nets import evaluating
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class FreeBitsConfig:
    lam: float = field(
        default=0.25,
        metadata={
            "help": "free nats per latent dimension: a site's batch-mean KL below lam x its "
            "dimensions costs that constant instead",
            "min": 0,
        },
    )
    num_particles: int = field(default=1, metadata={"help": "samples of z per datapoint, averaged", "min": 1})
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


def site_dims(pair: PairTrace, name: str) -> int:
    """Latent dimensions of site ``name`` per datapoint: its event size times its non-data plates."""
    site = pair.guide_sites[name]
    fn = site["fn"]
    plates = pair.per_datapoint(torch.ones(fn.batch_shape), site, name)[0, 0].item()
    return int(plates) * math.prod(fn.event_shape)


@register_objective("free_bits", FreeBitsConfig)
class FreeBits(Objective):
    """E_q[log p(x | z)] - sum_s max(lambda D_s, mean_batch KL(q(z_s | .) || p(z_s | .))), per batch.

    Every latent site s (of D_s dimensions per datapoint) is one group of Kingma et al.'s free
    bits: while the site's KL averaged over the batch (and particles) is below ``lam`` x D_s, the
    site pays the constant lambda D_s and its KL has no gradient, so the encoder may spend that many
    nats on the site without being pushed back to the prior; above it the term is the ELBO's. The
    per-datapoint values returned by :meth:`per_datapoint` average over the batch to this objective
    (a clamped site contributes the constant to every datapoint), and they are not a bound on
    log p(x) one by one; :meth:`bound` is the plain ELBO, what is reported. KL terms are closed
    form where :meth:`~vaezoo.inference.traces.PairTrace.analytic_kl` allows it (and
    ``analytic_kl``), else the one-sample estimate log q - log p, whose batch mean is still unbiased.

    Deviation from the paper: Kingma et al. choose the groups by hand and give lambda per group;
    here a group is a latent site and lambda is in nats per dimension, so one lambda serves sites
    of different sizes. The objective depends on the batch (a datapoint's term depends on the
    others), as in the paper.

    References:
        - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational
          Inference with Inverse Autoregressive Flow, NIPS (Appendix C.8, "free bits").
        - Chen et al. (2017), Variational Lossy Autoencoder, ICLR (free bits with a PixelCNN decoder).
    """

    def _terms(
        self, model, guide, x: torch.Tensor, latent_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """log p(x | z) ``(k, batch)``, KL per site ``(sites, k, batch)`` and each site's dimensions."""
        with scaled_latents(latent_weight):
            pair = run_pair(model, guide, x, self.config.num_particles)
        recon = sum(pair.log_p(name) for name in pair.observed)
        return recon, group_kls(pair, self.config.analytic_kl), [site_dims(pair, n) for n in pair.latent]

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        recon, kls, dims = self._terms(model, guide, x, latent_weight)
        floors = self.config.lam * torch.tensor(dims, dtype=kls.dtype, device=kls.device)
        below = kls.flatten(1).mean(1) < floors  # per site: is its batch-mean KL under the floor?
        kl = torch.where(below.reshape(-1, 1, 1), floors.reshape(-1, 1, 1), kls).sum(0)
        return (recon - kl).mean(0)

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        # Each site's KL is clamped on its own, so it must be the guide's own per-site KL; a guide with
        # detached samples (hmc_refined) scores them with a surrogate log q, right only in the ELBO's sum.
        with torch.enable_grad(), poutine.block(), evaluating(model, guide):
            pair = run_pair(model, guide, x, 1)
            require_pathwise(
                pair,
                guide,
                "free_bits",
                needs="clamps each latent site's KL, which needs the "
                "guide's own per-site density and pathwise samples",
            )

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """The ELBO per datapoint, with no clamping (a lower bound on log p(x))."""
        recon, kls, _ = self._terms(model, guide, x, 1.0)
        return (recon - kls.sum(0)).mean(0)


__all__ = ["FreeBits", "FreeBitsConfig", "site_dims"]
