"""Adversarial autoencoder: the ELBO's KL replaced by a discriminator that matches q(z) to the prior."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from pyro import poutine

from vaezoo.inference.adversary import Adversary, AdversaryConfig, check_pathwise, generator_loss
from vaezoo.inference.aggregate import check_real_latents, latent_matrix
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.objective import Objective
from vaezoo.inference.traces import _sample_sites, particle_plate, run_pair
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class AAEConfig(AdversaryConfig):
    """The discriminator D(z) fields of :class:`AdversaryConfig`, and the weight of its term."""

    lam: float = field(
        default=1.0, metadata={"help": "weight of the adversarial regularization of q(z)", "min": 0}
    )


def prior_sites(model, x: torch.Tensor) -> dict[str, dict]:
    """One ancestral draw of the model's sites per datapoint of ``x``, under a particle plate of 1."""
    with particle_plate(model, 1):
        return _sample_sites(poutine.trace(model).get_trace(x))


@register_objective("aae", AAEConfig)
class AdversarialAutoencoder(Objective):
    """L(x_i) = E_q(z|x_i) log p(x_i | z) - lambda * l_G(f(z_i)),  z_i ~ q(z | x_i)  (Makhzani et al. 2016).

    The adversarial autoencoder keeps the VAE's reconstruction term and replaces the KL with a GAN
    played in latent space: the aggregate posterior q(z) = E_p(x) q(z | x) is the generator's
    distribution, the prior p(z) the real one. A discriminator D(z) = sigmoid(f(z))
    (:class:`~vaezoo.inference.adversary.Discriminator`, owned by this objective with its own Adam
    optimizer) is trained in alternation with model and guide, ``discriminator_steps`` steps before
    each of theirs (Goodfellow et al.'s Algorithm 1), each on fresh draws:

        min_D  E_p(z) softplus(-f(z)) + E_q(z) softplus(f(z))  =  -V(D, q),

    while the encoder lowers l_G: ``non_saturating`` -log D(z) (the default, as in the paper's
    training) or ``minimax`` log(1 - D(z)); at the optimal discriminator the minimax game minimizes
    JSD(q(z) || p(z)) (see :mod:`~vaezoo.inference.adversary`). Every latent site is concatenated into
    one vector per datapoint, so a hierarchical prior is matched jointly. ``adversary_step`` reports
    the discriminator's loss before each update (``discriminator_loss``: log 4 = 1.386 for a
    discriminator that cannot tell q(z) from p(z), log 4 - 2 JSD at best); ``fit`` averages it per
    epoch.

    **What the numbers are.** ``per_datapoint`` is the training objective above, one sample of z per
    datapoint: *not* a bound on log p(x) (the adversarial term is not a KL, and lambda * l_G can have
    either sign). :meth:`bound` is the per-datapoint ELBO of the same model and guide (closed-form KL
    where valid), a true lower bound on log p(x) whenever the guide has a density, as every vaezoo
    guide does: what evaluation reports and what the other objectives report, so the numbers stay
    comparable. An AAE is not trained to make that ELBO tight, and usually has a worse one.

    **Deviations.** The paper's reconstruction phase and regularization phase are two updates of the
    encoder; here one gradient step takes the sum (weight ``lam``), as in common implementations.
    The prior is fixed: prior draws enter the discriminator's loss only, so a model whose prior has
    parameters (a hierarchy's p(z_1 | z_2)) keeps them at their initial values under this objective.
    The k discriminator steps reuse the batch x with fresh draws of z, rather than k new batches. The
    model and guide run in training mode during the discriminator's steps (batch-norm statistics
    move, as in a hand-written loop). The defaults (two hidden layers of 256, Adam at 2e-4) are ours;
    the paper's MNIST discriminator had two layers of 1000 units trained by SGD with momentum.

    References:
        - Makhzani, Shlens, Jaitly, Goodfellow & Frey (2016), Adversarial Autoencoders, ICLR
          workshop (arXiv 1511.05644), section 2.
        - Goodfellow et al. (2014), Generative Adversarial Nets, NIPS.
    """

    def __init__(self, config: AAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.adversary = Adversary(c.discriminator_hidden, c.discriminator_lr, "aae")
        self._elbo = ELBO()

    def to(self, device: torch.device | str) -> AdversarialAutoencoder:
        self.adversary.to(device)
        return self

    def state_dict(self) -> dict:
        return self.adversary.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.adversary.load_state_dict(state)

    def _posterior(self, model, guide, x, pair) -> torch.Tensor:
        check_real_latents(pair.guide_sites, pair.latent, "aae")
        return latent_matrix(pair.guide_sites, pair.latent, 1, x.shape[0])

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        with torch.enable_grad():
            pair = run_pair(model, guide, x)
            check_pathwise(pair.guide_sites, pair.latent, guide, "aae")
            self._posterior(model, guide, x, pair)
        latent_matrix(prior_sites(model, x), pair.latent, 1, x.shape[0])

    def regularizer(self, model, guide, x: torch.Tensor, pair=None) -> torch.Tensor:
        """The encoder's adversarial loss l_G(f(z_i)) of each datapoint, shape ``(batch,)``."""
        pair = pair if pair is not None else run_pair(model, guide, x)
        check_pathwise(pair.guide_sites, pair.latent, guide, "aae")
        z = self._posterior(model, guide, x, pair)
        return generator_loss(self.adversary.logits(z), self.config.generator_loss).mean(0)

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        pair = run_pair(model, guide, x)
        recon = sum(pair.log_p(n) for n in pair.observed).mean(0)
        return recon - latent_weight * self.config.lam * self.regularizer(model, guide, x, pair)

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """The per-datapoint ELBO (one sample of z): a lower bound on log p(x), not the training objective."""
        return self._elbo.per_datapoint(model, guide, x)

    def adversary_step(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> dict[str, float]:
        """``discriminator_steps`` updates of D on prior draws (real) against q(z | x) draws (fake)."""
        losses = []
        for _ in range(self.config.discriminator_steps):
            with torch.no_grad():
                with particle_plate(model, 1):
                    posterior = _sample_sites(poutine.trace(guide).get_trace(x))
                prior = prior_sites(model, x)
                names = [n for n, s in prior.items() if not s["is_observed"]]
                check_real_latents(posterior, names, "aae")
                fake = latent_matrix(posterior, names, 1, x.shape[0])
                real = latent_matrix(prior, names, 1, x.shape[0])
            losses.append(self.adversary.step(real, fake))
        return {"discriminator_loss": sum(losses) / len(losses)}
