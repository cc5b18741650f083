"""Hand-written PyTorch references for ``step_time_coarse.py``: the coarse-to-fine models' losses, no Pyro.

Each class deep-copies the networks of one vaezoo model and its default guide (so both sides start
from the same weights) and computes, as a batch mean, the loss vaezoo's objective computes on that
pair: the single-sample ELBO for the PixelVAE (:class:`vaezoo.ELBO`), the sequential VAE's
``stepwise`` objective (:class:`~vaezoo.inference.stepwise.Stepwise`) and the multi-stage VAE's
``multistage`` objective (:class:`~vaezoo.inference.multistage.MultiStage`). To be the *same
estimator*, noise is drawn in the guide's sampling order, one ``rsample`` per latent site of the
guide's shape, and a latent term is the closed-form KL exactly where vaezoo's rule takes it
(:meth:`vaezoo.inference.traces.PairTrace.analytic_kl`; :attr:`closed_form` names those sites and
the benchmark checks them on the live pair), log p - log q on the sample elsewhere.

:attr:`parts` lists ``(owner, attribute)`` of every copied network, ``owner`` ``"model"`` or
``"guide"``: the copy is the reference's attribute of the same name, so a test can pair each
reference parameter with vaezoo's.

Each reference runs every network once per step, the least work its loss needs: vaezoo's sequential
VAE also takes the mean of its last step (which nothing reads), and its multi-stage VAE builds the
two stages' scales, which the ``multistage`` loss does not use; the references skip both.

References:
    - Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville (2017), PixelVAE: A Latent
      Variable Model for Natural Images, ICLR.
    - Zhao, Song & Ermon (2017a), Towards Deeper Understanding of Variational Autoencoding Models,
      arXiv:1702.08658.
    - Cai, Gao & Ji (2017), Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image
      Generation, arXiv:1705.07202.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaezoo.nets import normal_head


def standard_normal_kl(q: Normal) -> torch.Tensor:
    """KL(q || N(0, I)) summed over the last dimension, through torch's Normal-Normal closed form."""
    return kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))).sum(-1)


def bernoulli_log_lik(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; logits) summed over everything but the batch dimension, shape ``(batch,)``."""
    nll = F.binary_cross_entropy_with_logits(logits.reshape(x.shape), x, reduction="none")
    return -nll.flatten(1).sum(-1)


class Copies(nn.Module):
    """Deep copies of the networks named in :attr:`parts`, under the same attribute names."""

    parts: tuple[tuple[str, str], ...] = ()

    def __init__(self, model, guide):
        super().__init__()
        owners = {"model": model, "guide": guide}
        for owner, name in self.parts:
            setattr(self, name, copy.deepcopy(getattr(owners[owner], name)))


class AmortizedEncoder(Copies):
    """The ``amortized`` guide's encoder: one MLP and a linear head to (loc, raw scale) of every site."""

    def __init__(self, model, guide):
        super().__init__(model, guide)
        self.q_min, self.sizes = guide.config.min_scale, list(guide.sizes)

    def posteriors(self, x: torch.Tensor) -> list[Normal]:
        """q(z_s | x) per site, in the guide's order, over flattened sites."""
        loc, raw = self.head(self.encoder(x.flatten(1))).chunk(2, dim=-1)
        scale = F.softplus(raw) + self.q_min
        return [
            Normal(m, s) for m, s in zip(loc.split(self.sizes, -1), scale.split(self.sizes, -1), strict=True)
        ]


class HandWrittenPixelVAE1(AmortizedEncoder):
    """One-level PixelVAE with the ``amortized`` guide: closed-form KL for z.

    z ~ q(z | x) = N(head(encoder(x))); h = upsample(z); log p(x | z) = sum_i log Bernoulli(x_i;
    PixelCNN(x, h)_i) in one teacher-forced pass; loss = -mean(log p(x | z) - KL(q || N(0, I))).
    """

    parts = (("guide", "encoder"), ("guide", "head"), ("model", "upsample"), ("model", "decoder"))
    closed_form = ("z",)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        (q,) = self.posteriors(x)
        z = q.rsample()
        return -(bernoulli_log_lik(self.decoder(x, self.upsample(z)), x) - standard_normal_kl(q)).mean()


class HandWrittenPixelVAE2(Copies):
    """Two-level PixelVAE with the bottom-up Markov guide q(z1 | x) q(z2 | z1).

    The guide samples z1 first, the model z2 first: vaezoo takes the closed form only for z2
    (KL(q(z2 | z1) || N(0, I))) and log p(z1 | z2) - log q(z1 | x) on the sample for z1, where
    p(z1 | z2) = N(prior_net(z2)) over the flattened latent map.
    """

    parts = (("guide", "nets"), ("model", "prior_net"), ("model", "upsample"), ("model", "decoder"))
    closed_form = ("z2",)

    def __init__(self, model, guide):
        super().__init__(model, guide)
        if guide.config.conditioning != "markov":
            raise ValueError("HandWrittenPixelVAE2 needs the bottom_up guide with conditioning 'markov'")
        self.q_min, self.p_min, self.z1_shape = guide.config.min_scale, model.config.min_scale, model.z1_shape

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        q1 = Normal(*normal_head(self.nets[0](x.flatten(1)), self.q_min))
        z1 = q1.rsample()
        q2 = Normal(*normal_head(self.nets[1](z1), self.q_min))
        z2 = q2.rsample()
        p1 = Normal(*normal_head(self.prior_net(z2), self.p_min))
        latent = (p1.log_prob(z1) - q1.log_prob(z1)).sum(-1) - standard_normal_kl(q2)
        h = self.upsample(z1.reshape(-1, *self.z1_shape))
        return -(bernoulli_log_lik(self.decoder(x, h), x) + latent).mean()


class HandWrittenSequentialVAE(AmortizedEncoder):
    """Sequential VAE (Bernoulli pixels) with the ``amortized`` guide, trained by ``stepwise``.

    z_1..z_n ~ q (one encoder, sampled in order); m_0 = 0, logits_i = f_i([z_i; m_{i-1}]),
    m_i = sigmoid(logits_i); loss = -mean(log p_n(x) + w sum_{i<n} log p_i(x) - beta sum_i KL(q_i || N(0, I)))
    with w the objective's ``auxiliary_weight`` (0 gives the ELBO of the program). Every prior is
    N(0, I) and independent of the other latents, so every KL is in closed form.
    """

    parts = (("guide", "encoder"), ("guide", "head"), ("model", "step_nets"))

    def __init__(self, model, guide, auxiliary_weight: float = 1.0, beta: float = 1.0):
        super().__init__(model, guide)
        if model.config.likelihood != "bernoulli":
            raise ValueError("HandWrittenSequentialVAE is written for Bernoulli pixels")
        self.weight, self.beta, self.closed_form = auxiliary_weight, beta, tuple(model.layer_sites)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        qs = self.posteriors(x)
        zs = [q.rsample() for q in qs]
        kl = sum(standard_normal_kl(q) for q in qs)
        previous, auxiliary = x.new_zeros(x.shape[0], x[0].numel()), 0.0
        last = len(zs) - 1
        for i, z in enumerate(zs):
            logits = self.step_nets[min(i, len(self.step_nets) - 1)].net(torch.cat([z, previous], -1))
            if i == last:
                return -(bernoulli_log_lik(logits, x) + self.weight * auxiliary - self.beta * kl).mean()
            auxiliary = auxiliary + bernoulli_log_lik(logits, x)
            previous = torch.sigmoid(logits)
        raise AssertionError("unreachable: a sequential VAE has at least one step")


class HandWrittenMultiStageVAE(AmortizedEncoder):
    """Two-stage multi-stage VAE with the ``amortized`` guide, trained by ``multistage``.

    z ~ q(z | x); m1 = sigmoid(coarse(z)); m2 = refiner(m1) (the refiner adds its input);
    loss = mean(l2 ||x - m1||^2 + l1 ||x - m2||_1 + beta KL(q || N(0, I))), errors summed over pixels.
    """

    parts = (("guide", "encoder"), ("guide", "head"), ("model", "coarse"), ("model", "refiner"))
    closed_form = ("z",)

    def __init__(self, model, guide, l2_weight: float = 1.0, l1_weight: float = 1.0, beta: float = 1.0):
        super().__init__(model, guide)
        if model.config.stages != 2:
            raise ValueError("HandWrittenMultiStageVAE needs multistage_vae with stages=2")
        self.l2, self.l1, self.beta = l2_weight, l1_weight, beta

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        (q,) = self.posteriors(x)
        z = q.rsample()
        m1 = torch.sigmoid(self.coarse(z))
        m2 = self.refiner(m1)
        error = self.l2 * (x - m1).pow(2).flatten(1).sum(-1) + self.l1 * (x - m2).abs().flatten(1).sum(-1)
        return (error + self.beta * standard_normal_kl(q)).mean()


def pixel_vae_reference(model, guide, objective) -> nn.Module:
    """The PixelVAE reference for the model's number of levels (ELBO: ``objective`` has no weights)."""
    return (HandWrittenPixelVAE1 if model.config.levels == 1 else HandWrittenPixelVAE2)(model, guide)


def sequential_reference(model, guide, objective) -> nn.Module:
    c = objective.config
    return HandWrittenSequentialVAE(model, guide, c.auxiliary_weight, c.beta)


def multistage_reference(model, guide, objective) -> nn.Module:
    c = objective.config
    return HandWrittenMultiStageVAE(model, guide, c.l2_weight, c.l1_weight, c.beta)


#: model name -> ``reference(model, guide, objective)``.
REFERENCES = {
    "pixel_vae": pixel_vae_reference,
    "sequential_vae": sequential_reference,
    "multistage_vae": multistage_reference,
}
