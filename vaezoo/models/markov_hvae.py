"""The Markov hierarchical VAE: each latent layer depends only on the layer directly above it."""

from __future__ import annotations

from vaezoo.models.hvae import HVAEConfig, TopDownHierarchy
from vaezoo.registry import register_model

# Same fields and defaults as the general HVAE: the two differ only in their conditioning.
MarkovHVAEConfig = HVAEConfig


@register_model("markov_hvae", MarkovHVAEConfig)
class MarkovHVAE(TopDownHierarchy):
    """A chain of Gaussian latent layers: x depends on z_1 only, z_l on z_{l+1} only.

    Generative story (layers numbered from the data up, ``L = len(z_dims)``)::

        z_L ~ N(0, I)
        z_l ~ N(mu_l(z_{l+1}), diag sigma_l(z_{l+1})^2)     l = L-1, ..., 1
        x   ~ Bernoulli(logits = f(z_1))

    with MLPs mu_l, sigma_l of width ``hidden[l]`` and f of width ``hidden[0]``. The default guide is
    the bottom-up Markov chain q(z_1 | x) prod_{l>1} q(z_l | z_{l-1}) (``"bottom_up"`` with
    ``conditioning="markov"``). The defaults match :class:`~vaezoo.models.hvae.HVAE`, so the two
    differ only in their conditioning. This is the family Zhao, Song & Ermon (2017) analyse: with
    it, an optimal model can represent everything in z_1 and leave the higher layers unused, which
    the per-layer diagnostics of :mod:`vaezoo.analysis.diagnostics` make visible. The Ladder VAE shares this
    generative model and differs only in its inference network.

    References:
        - Zhao, Song & Ermon (2017), Learning Hierarchical Features from Deep Generative Models, ICML.
        - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    """

    markov = True
