"""The multimodal VAE's product-of-experts guide: a Gaussian expert per present modality, times the prior."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.multimodal import MultimodalBatch
from vaezoo.nets import Activation, mlp
from vaezoo.registry import register_guide
from vaezoo.zoo_module import ZooModule


@dataclass(frozen=True)
class ProductOfExpertsConfig:
    hidden: tuple[int, ...] = field(
        default=(512, 512), metadata={"help": "image expert hidden widths, from the image up", "min": 1}
    )
    label_hidden: tuple[int, ...] = field(
        default=(512,), metadata={"help": "label expert hidden widths, from the one-hot label up", "min": 1}
    )
    activation: Activation = "elu"
    min_scale: float = field(
        default=1e-4, metadata={"help": "floor on each expert's standard deviation", "min": 0}
    )


def product_of_gaussians(
    locs: list[torch.Tensor], precisions: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, scale) of the Gaussian proportional to N(0, I) prod_m N(loc_m, diag 1 / precision_m).

    The standard-normal prior is the first expert: precision = 1 + sum_m precision_m,
    loc = sum_m precision_m loc_m / precision. An expert with precision 0 (in some rows) drops out
    of those rows; its loc must still be finite. With no experts it is the prior.
    """
    if not locs:
        raise ValueError("product_of_gaussians needs at least one expert besides the prior")
    precision = 1.0 + sum(precisions)
    weighted = sum(p * m for p, m in zip(precisions, locs, strict=True))
    return weighted / precision, precision.rsqrt()


@register_guide("product_of_experts", ProductOfExpertsConfig)
class ProductOfExperts(ZooModule):
    """q(z | X) ∝ p(z) prod over the modalities m present in X of q̃(z | x_m).

    Each expert q̃(z | x_m) = N(mu_m(x_m), diag sigma_m(x_m)^2) is an encoder of one modality (an MLP
    on the flattened image; an MLP on the one-hot label), and the prior expert p(z) = N(0, I) is
    always in the product. A product of Gaussians is Gaussian, with precisions added and means
    precision-weighted (:func:`product_of_gaussians`), so q is available in closed form for any
    subset of modalities: a missing modality's expert gets weight 0 per datapoint from the batch's
    presence mask. If every q̃(z | x_m) is proportional to the likelihood p(x_m | z) as a function of
    z (exactly possible for linear-Gaussian views), q is the exact posterior given any subset.

    Only models that declare ``modalities`` (a dict site name -> ``"image"`` or ``"label"``, as
    :class:`~vaezoo.models.MVAE`) are served; others are refused with a :class:`ConfigError`.

    References:
        - Wu & Goodman (2018), Multimodal Generative Models for Scalable Weakly-Supervised Learning, NeurIPS.
        - Hinton (2002), Training Products of Experts by Minimizing Contrastive Divergence,
          Neural Computation.
    """

    def __init__(self, model, config: ProductOfExpertsConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = resolve(ProductOfExpertsConfig, config, overrides)
        modalities = getattr(model, "modalities", None)
        if not isinstance(modalities, dict):
            raise ConfigError(
                f"product_of_experts needs a multimodal model (one with modalities, e.g. 'mvae'); "
                f"{type(model).__name__} observes one x, so use a single-encoder guide such as 'amortized'"
            )
        c = self.config
        self.modalities = dict(modalities)
        self.z_dim = model.z_dim
        self.image_ndim = len(model.image_shape)
        self.num_classes = getattr(model.config, "num_classes", None)
        self.trunks = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for name, kind in self.modalities.items():
            widths = (model.width(kind), *(c.hidden if kind == "image" else c.label_hidden))
            self.trunks[name] = mlp(widths, c.activation, final_act=True)
            self.heads[name] = nn.Linear(widths[-1], 2 * self.z_dim)

    def expert(self, name: str, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, precision) of q̃(z | x_name), each ``(n, z_dim)``."""
        if self.modalities[name] == "label":
            h = F.one_hot(value, self.num_classes).to(self.heads[name].weight.dtype)
        else:
            h = value.flatten(-self.image_ndim)
        loc, raw = self.heads[name](self.trunks[name](h)).chunk(2, -1)
        scale = F.softplus(raw) + self.config.min_scale
        return loc, scale.pow(-2)

    def shared_expert(self, name: str, batch: MultimodalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`expert` of ``name``, computed once per value tensor within a batch's memo (one
        training step on several subsets of one batch, see
        :meth:`~vaezoo.multimodal.MultimodalBatch.with_memo`)."""
        value = batch.values[name]
        if batch.memo is None:
            return self.expert(name, value)
        key = (id(self), name)
        hit = batch.memo.get(key)
        if hit is None or hit[0] is not value:
            hit = batch.memo[key] = (value, *self.expert(name, value))
        return hit[1], hit[2]

    def posterior(self, batch: MultimodalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | the present modalities of each datapoint), each ``(n, z_dim)``."""
        locs, precisions = [], []
        for name in self.modalities:
            present = batch.present[name]
            if not present.any():
                continue  # dropped from every row
            loc, precision = self.shared_expert(name, batch)
            if not present.all():
                precision = precision * present.to(precision.dtype).unsqueeze(-1)  # dropped where absent
            locs.append(loc)
            precisions.append(precision)
        if not locs:  # only the prior: no datapoint has a modality (never so in checked data)
            ref = self.heads[next(iter(self.modalities))].weight
            zero = torch.zeros((len(batch), self.z_dim), dtype=ref.dtype, device=ref.device)
            return zero, zero + 1.0
        return product_of_gaussians(locs, precisions)

    def forward(self, batch: MultimodalBatch) -> None:
        loc, scale = self.posterior(batch)
        with pyro.plate("data", len(batch)):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
