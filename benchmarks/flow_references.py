"""Hand-written PyTorch references for ``step_time_flows.py``: a VAE's ELBO with a flow guide, no Pyro.

Each class deep-copies the networks of one vaezoo VAE and flow guide (encoder MLP, linear head,
the flow's own networks, decoder), so both sides start from the same weights, and computes the
single-sample ELBO that :class:`vaezoo.ELBO` computes on that pair, as the batch mean of
-(log p(x | z) + log p(z) - log q(z | x)): a flow's q has no closed-form KL to the prior, so vaezoo
takes the Monte Carlo term log q - log p at the sample, and so does the reference. The noise is
one ``randn`` of shape ``(batch, D)``, the numbers vaezoo's guide draws for one particle, so that
seeded alike both sides see the same z. The flow steps are written out here, not imported from
vaezoo; only the networks are shared (the IAF's MADEs are networks, like the encoder).

References:
    - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational
      Inference with Inverse Autoregressive Flow, NIPS.
    - Rezende & Mohamed (2015), Variational Inference with Normalizing Flows, ICML.
    - van den Berg, Hasenclever, Tomczak & Welling (2018), Sylvester Normalizing Flows for
      Variational Inference, UAI.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class HandWrittenFlowVAE(nn.Module):
    """The shared part: encoder, base Gaussian, prior, Bernoulli decoder; a subclass writes the flow."""

    def __init__(self, model, guide):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(guide.encoder), copy.deepcopy(guide.head)
        self.decoder = copy.deepcopy(model.decoder)
        self.dim, self.min_scale = guide.dim, guide.config.min_scale

    def flow(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_T, sum of log |det| over the steps)``."""
        raise NotImplementedError

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dim
        out = self.head(self.encoder(x.flatten(1)))
        loc, raw, cond = out.split([d, d, out.shape[-1] - 2 * d], -1)
        scale = F.softplus(raw) + self.min_scale
        eps = torch.randn_like(loc)
        z, log_det = self.flow(loc + scale * eps, cond)
        log_q = -(0.5 * eps.pow(2) + HALF_LOG_2PI).sum(-1) - scale.log().sum(-1) - log_det
        log_pz = -(0.5 * z.pow(2) + HALF_LOG_2PI).sum(-1)
        log_px = -F.binary_cross_entropy_with_logits(self.decoder(z), x.flatten(1), reduction="none").sum(-1)
        return -(log_px + log_pz - log_q).mean()


class HandWrittenIAF(HandWrittenFlowVAE):
    """IAF (Kingma et al. 2016, Algorithm 1): per step [m, s] = MADE(z, h), g = sigmoid(s),
    z = g z + (1 - g) m, log det = sum log g; the MADEs' masks carry the reversed orders."""

    def __init__(self, model, guide):
        super().__init__(model, guide)
        self.mades = copy.deepcopy(guide.mades)
        self.context = guide.config.context

    def flow(self, z, cond):
        h = cond if self.context else None
        log_det = z.new_zeros(())
        for made in self.mades:
            m, s = made(z, h)
            gate = torch.sigmoid(s)
            z = gate * z + (1 - gate) * m
            log_det = log_det + F.logsigmoid(s).sum(-1)
        return z, log_det


class HandWrittenPlanar(HandWrittenFlowVAE):
    """Planar steps z + u^ tanh(w.z + b), u^ = u + (softplus(w.u) - 1 - w.u) w / |w|^2 (Rezende &
    Mohamed 2015, appendix A), with (u, w, b) of every step from the encoder."""

    def __init__(self, model, guide):
        super().__init__(model, guide)
        self.steps = guide.config.steps

    def flow(self, z, cond):
        d = self.dim
        params = cond.unflatten(-1, (self.steps, 2 * d + 1))
        log_det = z.new_zeros(())
        for k in range(self.steps):
            u, w, b = params[:, k, :d], params[:, k, d : 2 * d], params[:, k, 2 * d :]
            wu = (w * u).sum(-1, keepdim=True)
            wu_hat = F.softplus(wu) - 1
            w_norm2 = w.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
            u_hat = u + (wu_hat - wu) * w / w_norm2
            t = torch.tanh((w * z).sum(-1, keepdim=True) + b)
            z = z + u_hat * t
            log_det = log_det + (1 + wu_hat * (1 - t.pow(2))).log().squeeze(-1)
        return z, log_det


class HandWrittenSylvester(HandWrittenFlowVAE):
    """Orthogonal Sylvester steps z + Q R tanh(R~ Q^T z + b), Q from a QR decomposition, R and R~
    upper triangular with tanh diagonals (van den Berg et al. 2018)."""

    def __init__(self, model, guide):
        super().__init__(model, guide)
        self.steps, self.rank = guide.config.steps, guide.rank

    def flow(self, z, cond):
        d, m = self.dim, self.rank
        log_det = z.new_zeros(())
        for chunk in cond.chunk(self.steps, -1):
            a, r, r_t, b = chunk.split([d * m, m * m, m * m, m], -1)
            q = torch.linalg.qr(a.unflatten(-1, (d, m))).Q
            r, r_t = r.unflatten(-1, (m, m)), r_t.unflatten(-1, (m, m))
            r_diag = torch.tanh(r.diagonal(dim1=-2, dim2=-1))
            rt_diag = torch.tanh(r_t.diagonal(dim1=-2, dim2=-1))
            r = r.triu(1) + torch.diag_embed(r_diag)
            r_t = r_t.triu(1) + torch.diag_embed(rt_diag)
            t = torch.tanh((r_t @ (q.transpose(-1, -2) @ z.unsqueeze(-1))).squeeze(-1) + b)
            z = z + (q @ (r @ t.unsqueeze(-1))).squeeze(-1)
            log_det = log_det + (1 + (1 - t.pow(2)) * r_diag * rt_diag).abs().log().sum(-1)
        return z, log_det


REFERENCES = {"iaf": HandWrittenIAF, "planar": HandWrittenPlanar, "sylvester": HandWrittenSylvester}
