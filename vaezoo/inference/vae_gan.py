"""VAE-GAN: the ELBO plus a GAN term, a discriminator on x between data and decoded latent draws."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from vaezoo.errors import ConfigError
from vaezoo.inference.adversarial_autoencoder import prior_sites
from vaezoo.inference.adversary import Adversary, AdversaryConfig, generator_loss
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import run_pair
from vaezoo.registry import register_objective

FakeSource = Literal["both", "posterior", "prior"]


@dataclass(frozen=True)
class VAEGANConfig(AdversaryConfig):
    """The discriminator D(x) fields of :class:`AdversaryConfig`, the GAN term's weight and fakes."""

    lam: float = field(default=1.0, metadata={"help": "weight of the GAN term on x", "min": 0})
    fake_from: FakeSource = field(
        default="both",
        metadata={"help": "which decoded z are fakes: posterior (reconstructions), prior (samples), both"},
    )
    analytic_kl: bool = field(default=True, metadata={"help": "use closed-form KL terms where valid"})


def decoded(sites: dict[str, dict], m: int) -> torch.Tensor:
    """The mean of the model's one observed site, the decoded image of its latent draw, as ``(n, m, F)``."""
    observed = [s for s in sites.values() if s["is_observed"]]
    if len(observed) != 1:
        raise ConfigError(
            f"vae_gan's discriminator reads one observed site, but the model has {len(observed)} "
            f"({[s['name'] for s in observed]}); use 'elbo' with this model"
        )
    site = observed[0]
    try:
        mean = site["fn"].mean
    except NotImplementedError:
        raise ConfigError(
            f"vae_gan shows its discriminator the decoder's mean, but the model's "
            f"{type(site['fn']).__name__} at site {site['name']!r} has none; use 'elbo' with this model"
        ) from None
    event = site["fn"].event_shape
    batch = mean.shape[: mean.dim() - len(event)]
    if not batch or batch[-1] != m or math.prod(batch[:-1]) != 1:
        raise ConfigError(
            f"vae_gan needs one decoded image per datapoint at site {site['name']!r}, whose mean has "
            f"batch shape {tuple(batch)} for a batch of {m}; use 'elbo' with this model"
        )
    return mean.reshape(1, m, event.numel())


@register_objective("vae_gan", VAEGANConfig)
class VAEGAN(Objective):
    """L(x_i) = E_q log p(x_i | z) - KL(q(z | x_i) || p(z)) - lambda * l_G(f(x~_i))  (Larsen et al. 2016).

    The ELBO of the pair plus the generator's side of a GAN played on x (Goodfellow et al. 2014): a
    discriminator D(x) = sigmoid(f(x)) (:class:`~vaezoo.inference.adversary.Discriminator`, owned by
    this objective with its own Adam optimizer) learns, ``discriminator_steps`` steps before each step of
    model and guide, to tell data x (real) from decoded latent draws x~ (fake):

        min_D  E_data softplus(-f(x)) + E_fake softplus(f(x~)),

    and the decoder (and, through the reconstructions, the encoder) lowers l_G: ``non_saturating``
    -log D(x~) or ``minimax`` log(1 - D(x~)). With ``minimax`` and the optimal discriminator the GAN term
    is 2 JSD(p_data || p_fake) - log 4 plus a term the generator does not change (Goodfellow et al.,
    Theorem 1), so the loss is the notes' -E log p(x|z) + KL(q(z|x) || p(z)) + 2 lambda JSD. The fakes
    (``fake_from``): reconstructions x~ = mean of p(x | z), z ~ q(z | x) (``posterior``); samples
    x~ = mean of p(x | z), z ~ p(z) (``prior``); or both, each half of the fake side, so D opposes
    the data to their even mixture. Per datapoint i, l_G averages its fakes.

    **The generated image.** x~ is the decoder's *mean*, for a Bernoulli decoder its probabilities in
    [0, 1], a differentiable function of z and the decoder's weights; a Bernoulli draw would carry no
    pathwise gradient. The data it is compared with are binary on binarized MNIST, so D can tell them
    apart partly by gray levels alone; the GAN term then mostly sharpens the probabilities.

    **What the numbers are.** ``per_datapoint`` is the training objective above, one z per datapoint;
    with ``lam > 0`` it is not a bound on log p(x). :meth:`bound` is the per-datapoint ELBO, a true
    lower bound: what evaluation reports, comparable with every other objective's.
    ``adversary_step`` reports ``discriminator_loss`` (log 4 for a discriminator that cannot tell).

    **Deviations from Larsen et al.** The reconstruction term is the decoder's own log-likelihood in
    pixel space, not their Gaussian likelihood of the discriminator's hidden features (the
    "learned similarity"), so lambda = 0 is exactly the ELBO and the bound keeps its meaning; one
    optimizer steps encoder and decoder together on the sum (they train the encoder, decoder and D
    with separate losses and a weight gamma between reconstruction and GAN terms for the decoder).
    The k discriminator steps reuse the batch x with fresh draws of z. The model must have one
    observed site whose distribution has a mean.

    References:
        - Larsen, Sønderby, Larochelle & Winther (2016), Autoencoding beyond pixels using a learned
          similarity metric, ICML.
        - Goodfellow et al. (2014), Generative Adversarial Nets, NIPS.
        - Kingma & Welling (2014), Auto-Encoding Variational Bayes, ICLR.
    """

    def __init__(self, config: VAEGANConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.adversary = Adversary(c.discriminator_hidden, c.discriminator_lr, "vae_gan")
        self._elbo = ELBO(analytic_kl=c.analytic_kl)

    def to(self, device: torch.device | str) -> VAEGAN:
        self.adversary.to(device)
        return self

    def state_dict(self) -> dict:
        return self.adversary.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.adversary.load_state_dict(state)

    def check_pair(self, model, guide, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ConfigError(
                f"vae_gan's discriminator reads x as one tensor, not {type(x).__name__}; "
                "use 'elbo' with this model"
            )
        self.real(x, self.fakes(model, guide, x))

    def fakes(self, model, guide, x: torch.Tensor, pair=None) -> torch.Tensor:
        """The decoded fakes ``fake_from`` asks for, ``(sources, batch, F)``; reconstructions from
        ``pair`` if given."""
        m = x.shape[0]
        shown = []
        if self.config.fake_from in ("both", "posterior"):
            pair = pair if pair is not None else run_pair(model, guide, x)
            shown.append(decoded(pair.model_sites, m))
        if self.config.fake_from in ("both", "prior"):
            shown.append(decoded(prior_sites(model, x), m))
        return torch.cat(shown, 0)

    def real(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The data batch as ``(batch, F)``, refused unless it has the fakes' size ``F``."""
        real = x.reshape(x.shape[0], -1)
        if real.shape[-1] != fake.shape[-1]:
            raise ConfigError(
                f"vae_gan compares data of {real.shape[-1]} values per datapoint with decoded images of "
                f"{fake.shape[-1]}; the model's observed site must be x itself; use 'elbo' with this model"
            )
        return real.to(fake.dtype)

    def regularizer(self, model, guide, x: torch.Tensor, pair=None) -> torch.Tensor:
        """The generator's GAN loss l_G of each datapoint's fakes, averaged, shape ``(batch,)``."""
        fake = self.fakes(model, guide, x, pair)
        return generator_loss(self.adversary.logits(fake), self.config.generator_loss).mean(0)

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        with scaled_latents(latent_weight):
            pair = run_pair(model, guide, x)
        elbo = self._elbo.particle_terms(pair).mean(0)
        return elbo - self.config.lam * self.regularizer(model, guide, x, pair)

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """The per-datapoint ELBO (one sample of z): a lower bound on log p(x), not the training objective."""
        return self._elbo.per_datapoint(model, guide, x)

    def adversary_step(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> dict[str, float]:
        """``discriminator_steps`` updates of D on the data batch (real) against fresh fakes."""
        losses = []
        for _ in range(self.config.discriminator_steps):
            with torch.no_grad():
                fake = self.fakes(model, guide, x).flatten(0, 1)
            losses.append(self.adversary.step(self.real(x, fake), fake))
        return {"discriminator_loss": sum(losses) / len(losses)}
