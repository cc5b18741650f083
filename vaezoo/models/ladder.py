"""The Ladder VAE's generative model (Sønderby et al. 2016): a Markov hierarchy with batch norm."""

from __future__ import annotations

from dataclasses import dataclass, field

from vaezoo.models.hvae import HVAEConfig, TopDownHierarchy
from vaezoo.nets import Activation
from vaezoo.registry import register_model


@dataclass(frozen=True)
class LadderVAEConfig(HVAEConfig):
    """The HVAE's fields with the paper's MNIST defaults."""

    z_dims: tuple[int, ...] = field(
        default=(64, 32, 16, 8, 4),
        metadata={"help": "latent sizes per layer, bottom (next to x) first", "min": 1, "min_len": 1},
    )
    hidden: tuple[int, ...] = field(
        default=(512, 256, 128, 64, 32),
        metadata={
            "help": "width of each rung's MLP, bottom first (rung l links layer l-1, or x, to l)",
            "min": 1,
        },
    )
    activation: Activation = "leaky_relu"
    batch_norm: bool = field(default=True, metadata={"help": "batch norm in every hidden layer"})


@register_model("lvae", LadderVAEConfig)
class LadderVAE(TopDownHierarchy):
    """The generative half of the Ladder VAE; its guide ``"ladder"`` reuses :attr:`top_down`.

    Generative story (layers numbered from the data up, ``L = len(z_dims)``)::

        z_L ~ N(0, I)
        z_l ~ N(mu_p,l(z_{l+1}), diag sigma_p,l(z_{l+1})^2)       l = L-1, ..., 1
        x   ~ Bernoulli(logits = f(z_1))

    Each mu_p,l / sigma_p,l is a two-layer MLP with batch norm and leaky ReLU of width
    ``hidden[l]``, then a linear layer (sigma through softplus); f has width ``hidden[0]``. The
    defaults are the paper's MNIST model: latent sizes 64-32-16-8-4 and deterministic layers of
    512-256-128-64-32 units. The inference network (:class:`~vaezoo.guides.ladder.LadderGuide`)
    runs a deterministic bottom-up pass, then a stochastic top-down pass through the very modules
    in :attr:`top_down`, merging the two by precision weighting. KL warm-up, which the paper uses,
    is the objective's job: ``ELBO(kl_warmup=...)``.

    Batch norm: in training mode it normalizes with the statistics of the current batch (particles
    included), in eval mode with running averages; importance sampling and evaluation switch to
    eval mode. The model, replayed on the guide's samples, reuses the priors the guide's top-down
    pass computed on those very tensors (:class:`~vaezoo.models.prior_handoff.PriorHandoff`)
    instead of running the networks again, so the running averages move once per step, and the
    top-down passes cost what they cost in the paper's single-network implementation.

    Deviation: the paper's variances are softplus outputs; we apply softplus to the standard
    deviation and add ``min_scale``, as every vaezoo Gaussian layer does.

    References:
        - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
        - Ioffe & Szegedy (2015), Batch Normalization, ICML.
    """

    markov = True
    default_guide_name = "ladder"

    def default_guide_config(self) -> dict:
        # The bottom-up networks mirror the model's rungs; the ladder guide has no conditioning choice.
        config = super().default_guide_config()
        del config["conditioning"]
        return config
