"""Hand-written PyTorch references for ``step_time_hier.py``: each hierarchy's ELBO with no Pyro.

Each class deep-copies the networks of one vaezoo model and its default guide (so both sides start
from the same weights, batch norm included) and computes the single-sample ELBO that
:class:`vaezoo.ELBO` computes on that pair, as the batch mean of -(log p(x | z) - sum of latent
terms). To be the *same estimator*, not merely an unbiased estimator of the same bound:

- noise is drawn in the guide's sampling order, one ``rsample`` per layer of the guide's
  shape, so that seeded alike both sides see the same z;
- a layer's latent term is the closed-form KL(q || p) exactly where
  :meth:`vaezoo.inference.traces.PairTrace.analytic_kl` takes it (every model site sampled before
  the layer was also sampled before it by the guide), and the Monte Carlo term
  log q(z_l | .) - log p(z_l | .) on the sampled z_l elsewhere. :attr:`closed_form` names those
  layers, and the benchmark checks them against vaezoo's rule on the live pair.

Each reference runs every network once per step (the Ladder VAE's reuses each top-down prior for
both the merge and the KL), which is the least work that estimator needs.

References:
    - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
    - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaezoo.guides.ladder import precision_weighted
from vaezoo.nets import normal_head


def standard_normal_kl(q: Normal) -> torch.Tensor:
    """KL(q || N(0, I)) summed over the last dimension, through torch's Normal-Normal closed form."""
    return kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))).sum(-1)


def bernoulli_log_lik(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; logits) summed over everything but the batch dimension, shape ``(batch,)``."""
    nll = F.binary_cross_entropy_with_logits(logits.reshape(x.shape), x, reduction="none")
    return -nll.flatten(1).sum(-1)


class HandWrittenLVAE(nn.Module):
    """Ladder VAE with its ladder guide: closed-form KL in every layer.

    Bottom-up: d_l = MLP_l(d_{l-1}), (mu_hat_l, sigma_hat_l) = head_l(d_l). Top-down, from the top:
    q(z_L) = N(mu_hat_L, sigma_hat_L^2) against N(0, I), and for l < L the precision-weighted merge
    of (mu_hat_l, sigma_hat_l) with the prior p(z_l | z_{l+1}) = top_down_l(z_{l+1}), against that
    prior. The guide samples top-down like the model, so vaezoo's rule allows the closed form in
    every layer; the reference reuses each prior for both the merge and the KL.
    """

    def __init__(self, model, guide):
        super().__init__()
        self.bottom_up, self.heads = copy.deepcopy(guide.bottom_up), copy.deepcopy(guide.heads)
        self.top_down, self.decoder = copy.deepcopy(model.top_down), copy.deepcopy(model.decoder)
        self.q_min, self.p_min = guide.config.min_scale, model.config.min_scale
        self.closed_form = tuple(model.layer_sites)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        d, estimates = x.flatten(1), []
        for net, head in zip(self.bottom_up, self.heads, strict=True):
            d = net(d)
            estimates.append(normal_head(head(d), self.q_min))
        top = len(estimates) - 1
        kl = x.new_zeros(x.shape[0])
        z = None
        for j in reversed(range(top + 1)):
            loc, scale = estimates[j]
            if j == top:
                q = Normal(loc, scale)
                kl = kl + standard_normal_kl(q)
            else:
                prior = Normal(*normal_head(self.top_down[j](z), self.p_min))
                q = Normal(*precision_weighted(loc, scale, prior.loc, prior.scale))
                kl = kl + kl_divergence(q, prior).sum(-1)
            z = q.rsample()
        return -(bernoulli_log_lik(self.decoder(z), x) - kl).mean()


class HandWrittenHVAE(nn.Module):
    """HVAE (every layer conditioned on all layers above) with the bottom-up guide, conditioning "all".

    Guide, bottom-up: z_l ~ q_l = N(nets_l([x; z_1; ...; z_{l-1}])), sampled z_1 first. Model:
    z_L ~ N(0, I), z_l ~ p_l = N(top_down_l([z_{l+1}; ...; z_L])), x ~ Bernoulli(decoder([z_1; ...; z_L])).
    The model samples top-down and the guide bottom-up, so for l < L the model's z_{l+1}, ..., z_L
    come *after* z_l in the guide: vaezoo takes no closed form there (its expectation over z_l would
    hold the later samples fixed) and uses log q_l(z_l) - log p_l(z_l); only z_L gets KL(q_L || N(0, I)).
    """

    markov = False

    def __init__(self, model, guide):
        super().__init__()
        want = "markov" if self.markov else "all"
        if model.markov != self.markov or guide.config.conditioning != want:
            raise ValueError(f"{type(self).__name__} needs a model with markov={self.markov}, guide {want!r}")
        self.nets = copy.deepcopy(guide.nets)
        self.top_down, self.decoder = copy.deepcopy(model.top_down), copy.deepcopy(model.decoder)
        self.q_min, self.p_min = guide.config.min_scale, model.config.min_scale
        self.closed_form = (model.layer_sites[-1],)

    def context(self, layers: list[torch.Tensor], nearest: int) -> torch.Tensor:
        """A network's input: ``layers[nearest]`` alone (Markov), else all ``layers`` concatenated."""
        return layers[nearest] if self.markov else torch.cat(layers, dim=-1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        below, qs = [x.flatten(1)], []  # below: x, z_1, ..., nearest last
        for net in self.nets:
            q = Normal(*normal_head(net(self.context(below, -1)), self.q_min))
            below.append(q.rsample())
            qs.append(q)
        zs = below[1:]
        latent = -standard_normal_kl(qs[-1])  # log p - log q in expectation, for z_L
        for j in reversed(range(len(zs) - 1)):
            prior = Normal(*normal_head(self.top_down[j](self.context(zs[j + 1 :], 0)), self.p_min))
            latent = latent + (prior.log_prob(zs[j]) - qs[j].log_prob(zs[j])).sum(-1)
        return -(bernoulli_log_lik(self.decoder(self.context(zs, 0)), x) + latent).mean()


class HandWrittenMarkovHVAE(HandWrittenHVAE):
    """Markov HVAE with the bottom-up Markov guide: as :class:`HandWrittenHVAE`, nearest layer only.

    Guide: z_1 ~ N(nets_1(x)), z_l ~ N(nets_l(z_{l-1})); model: z_l ~ N(top_down_l(z_{l+1})),
    x ~ Bernoulli(decoder(z_1)). Same sampling orders as the HVAE, hence the same terms: closed-form
    KL for z_L, log q - log p on the sample for every lower layer.
    """

    markov = True


class HandWrittenVLAE(nn.Module):
    """VLAE with its ladder encoder: independent N(0, I) priors, closed-form KL in every layer.

    Guide: h_l = ladder_l(h_{l-1}), h_0 = x, z_l ~ q_l = N(heads_l(h_l)), sampled z_1 first. Model:
    zhat_L = up_L(z_L), zhat_l = up_l([zhat_{l+1}; inject_l(z_l)]), x ~ Bernoulli(out(zhat_1)). The
    priors depend on no other latent, so vaezoo's rule allows KL(q_l || N(0, I)) in every layer.
    """

    def __init__(self, model, guide):
        super().__init__()
        self.ladder, self.heads = copy.deepcopy(guide.ladder), copy.deepcopy(guide.heads)
        self.up, self.inject, self.out = (copy.deepcopy(m) for m in (model.up, model.inject, model.out))
        self.q_min, self.conv = guide.config.min_scale, guide.config.architecture == "conv"
        self.closed_form = tuple(model.layer_sites)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        h, zs = (x if self.conv else x.flatten(1)), []
        kl = x.new_zeros(x.shape[0])
        for g, head in zip(self.ladder, self.heads, strict=True):
            h = g(h)
            q = Normal(*normal_head(head(h), self.q_min))
            zs.append(q.rsample())
            kl = kl + standard_normal_kl(q)
        h = self.up[-1](zs[-1])
        for j in reversed(range(len(zs) - 1)):
            h = self.up[j](torch.cat([h, self.inject[j](zs[j])], dim=-1))
        return -(bernoulli_log_lik(self.out(h), x) - kl).mean()


REFERENCES = {
    "lvae": HandWrittenLVAE,
    "hvae": HandWrittenHVAE,
    "markov_hvae": HandWrittenMarkovHVAE,
    "vlae": HandWrittenVLAE,
}
