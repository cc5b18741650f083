"""Hand-written PyTorch references for ``step_time_objectives.py``: beta-TCVAE, InfoVAE and VQ-VAE, no Pyro.

Each class deep-copies the networks of one vaezoo model and guide, so both sides start from the same
weights, and computes the loss that the vaezoo objective computes on that pair (its
``differentiable_loss``, the negative batch mean), drawing its noise in vaezoo's order so that,
seeded alike, both sides see the same numbers. The estimators are written out here, not imported from
vaezoo; only the networks are shared.

- beta-TCVAE: VAE with its amortized Gaussian guide, one z_i ~ q(z | x_i); the table
  log q(z_id | x_jd) for every pair (i, j) and dimension d; log q(z_i) and log q(z_id) by
  minibatch-weighted sampling with the dataset size N (own datapoint weighted 1/N, the others
  (N - 1) / (N (M - 1))); loss -[log p(x | z) - alpha MI - beta TC - gamma dimKL].
- InfoVAE: the same pair; loss -[log p(x | z) - (1 - alpha) KL(q || p) (closed form)
  - (alpha + lambda - 1) MMD^2], the unbiased MMD^2 between the batch's z and as many prior draws,
  with vaezoo's default kernel exp(-r^2 / (2 D bandwidth^2)).
- VQ-VAE: encoder map z_e, nearest code per position, the codebook's training-time bookkeeping
  (usage counts, restarts of codes unused for ``dead_after`` batches and, on the first batch, of every
  unused code), the straight-through value z_e + sg[z_q - z_e] into the decoder; loss
  -[log p(x | z_q) - hw log K] + ||sg[z_e] - z_q||^2 + commitment ||z_e - sg[z_q]||^2, the
  squared distances summed over each map.

References:
    - Chen, Li, Grosse & Duvenaud (2018), Isolating Sources of Disentanglement in Variational
      Autoencoders, NeurIPS.
    - Zhao, Song & Ermon (2019), InfoVAE: Balancing Learning and Inference in Variational
      Autoencoders, AAAI; Gretton et al. (2012), A Kernel Two-Sample Test, JMLR.
    - van den Oord, Vinyals & Kavukcuoglu (2017), Neural Discrete Representation Learning, NIPS.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_normal(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((z - loc) / scale).pow(2) - scale.log() - HALF_LOG_2PI


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


class GaussianVAE(nn.Module):
    """The VAE's decoder and its amortized guide's encoder and head: q(z | x) = N(loc, softplus + min)."""

    def __init__(self, model, guide):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(guide.encoder), copy.deepcopy(guide.head)
        self.decoder = copy.deepcopy(model.decoder)
        self.min_scale = guide.config.min_scale

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, raw = self.head(self.encoder(x.flatten(1))).chunk(2, dim=-1)
        scale = F.softplus(raw) + self.min_scale
        return loc, scale, loc + scale * torch.randn_like(loc)

    def log_px(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(self.decoder(z), x.flatten(1))


class HandWrittenBetaTCVAE(GaussianVAE):
    def __init__(self, model, guide, objective):
        super().__init__(model, guide)
        c = objective.config
        self.alpha, self.beta, self.gamma, self.n = c.alpha, c.beta, c.gamma, c.dataset_size

    def mws_log_density(self, log_q: torch.Tensor) -> torch.Tensor:
        """logsumexp over j of ``log_q[i, j, ...]`` plus the log weight of datapoint j for sample i."""
        m, n = log_q.shape[0], self.n
        others = math.log((n - 1) / (n * (m - 1)))
        log_w = torch.full((m, m), others, dtype=log_q.dtype).fill_diagonal_(-math.log(n))
        return torch.logsumexp(log_q + log_w.view(m, m, *[1] * (log_q.dim() - 2)), dim=1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, scale, z = self.posterior(x)
        table = log_normal(z[:, None, :], loc[None, :, :], scale[None, :, :])  # (i, j, d)
        log_qz = self.mws_log_density(table.sum(-1))
        log_prod = self.mws_log_density(table).sum(-1)
        log_q = table.sum(-1).diagonal()
        log_p = (-0.5 * z.pow(2) - HALF_LOG_2PI).sum(-1)
        mi, tc, dim_kl = log_q - log_qz, log_qz - log_prod, log_prod - log_p
        return -(self.log_px(z, x) - self.alpha * mi - self.beta * tc - self.gamma * dim_kl).mean()


class HandWrittenInfoVAE(GaussianVAE):
    def __init__(self, model, guide, objective):
        super().__init__(model, guide)
        c = objective.config
        self.kl_weight, self.mmd_weight = 1.0 - c.alpha, c.alpha + c.lam - 1.0
        self.bandwidth = c.bandwidth
        if c.kernel != "gaussian" or not c.analytic_kl:
            raise ValueError("this reference writes out the gaussian kernel and the closed-form KL only")

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
        return torch.exp(-sq / (2 * a.shape[-1] * self.bandwidth**2))

    def mmd(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = a.shape[0]
        off_diagonal = 1.0 - torch.eye(n, dtype=a.dtype)
        within = ((self.kernel(a, a) + self.kernel(b, b)) * off_diagonal).sum() / (n * (n - 1))
        return within - 2 * self.kernel(a, b).mean()

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, scale, z = self.posterior(x)
        kl = (0.5 * (loc.pow(2) + scale.pow(2) - 1) - scale.log()).sum(-1)
        prior = torch.randn_like(z)
        own = self.log_px(z, x) - self.kl_weight * kl
        return -(own.mean() - self.mmd_weight * self.mmd(z, prior))


class HandWrittenVQ(nn.Module):
    """The VQ-VAE's encoder, decoder and codebook (loss-trained, as vaezoo's default)."""

    def __init__(self, model, guide, objective):
        super().__init__()
        self.encoder = copy.deepcopy(guide.encoder.net)  # the plain Sequential inside vaezoo's wrapper
        self.decoder = copy.deepcopy(model.decoder.net)
        book = model.codebook
        if book.update != "loss" or model.config.likelihood != "bernoulli" or model.prior_fitted:
            raise ValueError("this reference writes out the loss-trained codebook, Bernoulli pixels and the "
                             "uniform prior only")
        self.codebook = nn.Parameter(book.vectors.detach().clone())
        self.register_buffer("unused", book.unused_steps.clone())
        self.register_buffer("pending", book.pending_init.clone())
        self.dead_after, self.commitment = book.dead_after, objective.config.commitment
        self.log_prior = -math.prod(model.map_shape) * math.log(book.size)

    @torch.no_grad()
    def restart_unused(self, v: torch.Tensor, codes: torch.Tensor) -> None:
        used = torch.bincount(codes, minlength=len(self.codebook)) > 0
        self.unused.copy_(torch.where(used, 0, self.unused + 1))
        dead = self.pending & (self.unused > 0)
        if self.dead_after > 0:
            dead |= self.unused >= self.dead_after
        self.pending.fill_(False)
        picks = v[torch.randint(len(v), (len(self.codebook),))]
        self.codebook.copy_(torch.where(dead[:, None], picks, self.codebook))
        self.unused.masked_fill_(dead, 0)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z_e = self.encoder(x)
        v = z_e.detach().permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])
        e = self.codebook.detach()
        codes = (v.pow(2).sum(-1, keepdim=True) - 2 * v @ e.T + e.pow(2).sum(-1)).argmin(-1)
        if self.training:
            self.restart_unused(v, codes)
        z_q = self.codebook[codes].reshape(z_e.shape[0], *z_e.shape[2:], -1).permute(0, 3, 1, 2)
        log_px = bernoulli_log_prob(self.decoder(z_e + (z_q - z_e).detach()), x)
        codebook_loss = (z_e.detach() - z_q).pow(2).sum((1, 2, 3))
        commitment_loss = (z_e - z_q.detach()).pow(2).sum((1, 2, 3))
        return -(log_px + self.log_prior - codebook_loss - self.commitment * commitment_loss).mean()


REFERENCES = {"beta_tcvae": HandWrittenBetaTCVAE, "info_vae": HandWrittenInfoVAE, "vq": HandWrittenVQ}
