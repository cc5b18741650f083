"""The base of guides whose latent sites are independent given x, each read from ``site_dists(x)``."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from vaezoo.zoo_module import ZooModule


class FactorizedGuide(ZooModule):
    """q(z | x) = prod over latent sites s of q_s(z_s | x), the factors given by :meth:`site_dists`.

    A subclass says how it computes the factors (an encoder network, free per-datapoint parameters);
    sampling them is the same for all. Their Normal factors also let other guides start from them
    (:meth:`~vaezoo.guides.local.LocalNormal.init_from`,
    :class:`~vaezoo.guides.semi_amortized.SemiAmortized`), which find them through ``site_dists``.
    """

    def site_dists(self, x: torch.Tensor) -> dict[str, dist.Distribution]:
        """The guide's distribution of every latent site given the batch ``x``, keyed by site name."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> None:
        dists = self.site_dists(x)
        with pyro.plate("data", x.shape[0]):
            for name, d in dists.items():
                pyro.sample(name, d)


__all__ = ["FactorizedGuide"]
