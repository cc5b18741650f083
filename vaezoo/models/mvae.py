"""The multimodal VAE (Wu & Goodman 2018): one latent, a decoder per modality, each masked per datapoint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.distributions import bernoulli
from vaezoo.errors import ConfigError, DataError
from vaezoo.models.base import LIKELIHOOD_FIX, LatentVariableModel
from vaezoo.multimodal import MultimodalBatch, MultimodalDataset
from vaezoo.nets import Activation, mlp
from vaezoo.registry import register_model

#: Rows checked at a time when a lazily served data set is checked in full.
CHECK_CHUNK = 2000


@dataclass(frozen=True)
class MVAEConfig:
    image_shape: tuple[int, ...] = field(
        default=(1, 28, 28),
        metadata={
            "cli": False,
            "help": "shape of each image modality (set by the data set)",
            "min": 1,
            "min_len": 1,
        },
    )
    y_kind: Literal["label", "image"] = field(
        default="label", metadata={"help": "the second modality y: a class label or a second image"}
    )
    num_classes: int = field(default=10, metadata={"help": "classes of a label modality", "min": 2})
    z_dim: int = field(default=64, metadata={"help": "latent dimension", "min": 1})
    hidden: tuple[int, ...] = field(
        default=(512, 512), metadata={"help": "image decoder hidden widths, from z up", "min": 1}
    )
    label_hidden: tuple[int, ...] = field(
        default=(512,), metadata={"help": "label decoder hidden widths, from z up", "min": 1}
    )
    activation: Activation = "elu"
    likelihood: Literal["bernoulli", "gaussian"] = field(
        default="bernoulli",
        metadata={"help": "image likelihood: bernoulli (binary) or gaussian (learned scale)"},
    )


@register_model("mvae", MVAEConfig)
class MVAE(LatentVariableModel):
    """Two modalities x and y generated from one latent z; either may be missing in any datapoint.

    Generative story (per datapoint; ``present_m`` from the batch masks a missing modality's term)::

        z ~ N(0, I_{z_dim})
        x ~ Bernoulli(logits = f_x(z))                 an image
        y ~ Categorical(logits = f_y(z))                y_kind="label"
        y ~ Bernoulli(logits = f_y(z))                  y_kind="image" (a second image of image_shape)

    with likelihood="gaussian" each image is N(f(z), diag sigma^2), sigma learned per pixel; with
    ``hidden=()`` and a Gaussian likelihood the model is the linear-Gaussian two-view model
    x_m = W_m z + b_m + noise. Data are batches (:class:`~vaezoo.multimodal.MultimodalBatch`) keyed
    ``"x"`` and ``"y"``; the observed sites carry the same names, each masked by its presence vector, so
    log p of a datapoint is that of the modalities it has (a modality missing from every row of a
    batch is not observed at all: its masked term would be 0 everywhere). Its default guide is the
    product of experts (``"product_of_experts"``), the only guide that reads multimodal batches:
    single-tensor guides refuse this model with a :class:`ConfigError` when built (reading
    :attr:`x_shape`).

    Deviations: Wu & Goodman weight each modality's log-likelihood (lambda) in training; this model
    keeps the plain likelihood, so its log p and the bounds are those of one generative model. Their
    networks use swish activations; the choice here is a config field (ELU by default).

    References:
        - Wu & Goodman (2018), Multimodal Generative Models for Scalable Weakly-Supervised Learning,
          NeurIPS.
    """

    default_guide_name = "product_of_experts"

    def __init__(self, config: MVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.z_dim = c.z_dim
        self.image_shape = tuple(c.image_shape)
        #: Observed site name -> kind; the guide reads it to build one expert per modality.
        self.modalities = {"x": "image", "y": c.y_kind}
        self.decoders = nn.ModuleDict(
            {
                name: mlp((c.z_dim, *self.hidden_for(kind), self.width(kind)), c.activation)
                for name, kind in self.modalities.items()
            }
        )
        if c.likelihood == "gaussian":
            self.raw_scales = nn.ParameterDict(
                {
                    n: nn.Parameter(torch.zeros(self.image_shape))
                    for n, k in self.modalities.items()
                    if k == "image"
                }
            )

    def default_guide_config(self) -> dict:
        # Mirrored experts: each decoder's hidden widths in reverse.
        c = self.config
        return {
            "hidden": list(reversed(c.hidden)),
            "label_hidden": list(reversed(c.label_hidden)),
            "activation": c.activation,
        }

    def hidden_for(self, kind: str) -> tuple[int, ...]:
        return self.config.hidden if kind == "image" else self.config.label_hidden

    def width(self, kind: str) -> int:
        """Size of a modality's network side: pixels of an image, classes of a label."""
        return math.prod(self.image_shape) if kind == "image" else self.config.num_classes

    @property
    def x_shape(self) -> tuple[int, ...]:
        raise ConfigError(
            "mvae's data are multimodal batches (vaezoo.multimodal.MultimodalBatch), not one tensor "
            "of shape x_shape; use the guide 'product_of_experts'"
        )

    @property
    def x_numel(self) -> int:
        # Read by the importance sampler to size its chunks: the elements of one datapoint.
        return sum(self.width(k) if k == "image" else 1 for k in self.modalities.values())

    #: The base's flag is about one tensor x; this model checks each image modality (binary_images).
    binary_data = False

    @property
    def binary_images(self) -> bool:
        return self.config.likelihood == "bernoulli"

    def example_x(self, n: int = 1) -> MultimodalBatch:
        p = next(self.parameters())
        values = {
            name: torch.zeros((n, *self.image_shape), dtype=p.dtype, device=p.device)
            if kind == "image"
            else torch.zeros(n, dtype=torch.long, device=p.device)
            for name, kind in self.modalities.items()
        }
        return MultimodalBatch(values)

    def z_dist(self, batch: MultimodalBatch) -> dist.Distribution:
        zero = batch.values["x"].new_zeros(())  # an image: in the model's dtype, on its device
        return dist.Normal(zero, 1.0).expand([len(batch), self.z_dim]).to_event(1)

    def modality_dist(self, name: str, z: torch.Tensor) -> dist.Distribution:
        """p(modality ``name`` | z), batched over the leading dims of ``z``."""
        out = self.decoders[name](z)
        if self.modalities[name] == "label":
            return dist.Categorical(logits=out)
        out = out.reshape(*z.shape[:-1], *self.image_shape)
        if self.config.likelihood == "bernoulli":
            return bernoulli(out, len(self.image_shape))
        scale = F.softplus(self.raw_scales[name]) + 1e-3
        return dist.Normal(out, scale).to_event(len(self.image_shape))

    def forward(self, batch: MultimodalBatch) -> None:
        self.check_x(batch)
        with pyro.plate("data", len(batch)):
            z = pyro.sample("z", self.z_dist(batch))
            for name in self.modalities:
                if not batch.present[name].any():
                    continue  # missing in every row: its masked term would be 0
                d = self.modality_dist(name, z)
                if not batch.present[name].all():
                    d = d.mask(batch.present[name])
                pyro.sample(name, d, obs=batch.values[name])

    # -- data checks -------------------------------------------------------------------------

    def check_x(self, batch, full: bool = False) -> None:
        """Raise :class:`DataError` unless ``batch`` is a :class:`MultimodalBatch` this model can read.

        Always: its type, modality names and shapes. With ``full`` or Pyro's validation on: every
        datapoint has at least one modality, present labels lie in [0, num_classes), present images
        are finite (and binary for a Bernoulli likelihood).
        """
        from pyro.poutine.util import is_validation_enabled

        if not isinstance(batch, MultimodalBatch):
            raise DataError(
                f"MVAE takes a MultimodalBatch with modalities {sorted(self.modalities)}, got "
                f"{type(batch).__name__}; build one with vaezoo.multimodal.MultimodalBatch(values, present)"
            )
        if set(batch.names) != set(self.modalities):
            raise DataError(
                f"MVAE expects modalities {sorted(self.modalities)}, got {sorted(batch.names)}; "
                "key the values by the model's site names"
            )
        for name, kind in self.modalities.items():
            v = batch.values[name]
            want = (len(batch), *self.image_shape) if kind == "image" else (len(batch),)
            if tuple(v.shape) != want:
                raise DataError(
                    f"modality {name!r} ({kind}) must have shape {want}, got {tuple(v.shape)}; "
                    + (
                        "reshape the images or build the model with that image_shape"
                        if kind == "image"
                        else "pass class indices, one per datapoint (not one-hot)"
                    )
                )
            if kind == "label" and (v.is_floating_point() or v.dtype == torch.bool):
                raise DataError(f"label modality {name!r} must hold integer class indices, got {v.dtype}")
        if full or is_validation_enabled():
            self._check_values(batch)

    def _check_values(self, batch: MultimodalBatch) -> None:
        empty = (~batch.any_present()).nonzero().flatten()
        if len(empty):
            raise DataError(
                f"datapoint(s) {empty[:5].tolist()}{' ...' if len(empty) > 5 else ''} have every modality "
                "missing; drop them or mark at least one modality present"
            )
        for name, kind in self.modalities.items():
            v = batch.values[name][batch.present[name]]
            if kind == "label":
                bad = (v < 0) | (v >= self.config.num_classes)
                if bad.any():
                    raise DataError(
                        f"label modality {name!r} has values {sorted(set(v[bad].tolist()))[:5]} outside "
                        f"[0, {self.config.num_classes}); fix the labels or raise the model's num_classes"
                    )
                continue
            if not torch.isfinite(v).all():
                raise DataError(f"image modality {name!r} contains NaN or infinite values; clean the data")
            if self.binary_images and ((v != 0) & (v != 1)).any():
                raise DataError(
                    f"image modality {name!r} needs values in {{0, 1}} for the Bernoulli likelihood; "
                    + LIKELIHOOD_FIX["bernoulli"]
                )

    def prepare_data(self, data):
        """``data`` (a :class:`MultimodalBatch` or :class:`MultimodalDataset`) converted and checked in full.

        Images are brought to the model's dtype and labels to ``long``; a data set is checked chunk by
        chunk as it would be served.
        """
        if isinstance(data, MultimodalDataset):
            if len(data) == 0:
                raise DataError("the data set is empty; pass at least one datapoint")
            for start in range(0, len(data), CHECK_CHUNK):
                self.check_x(
                    self.convert(data.take(torch.arange(start, min(start + CHECK_CHUNK, len(data))))), True
                )
            return data
        if not isinstance(data, MultimodalBatch):
            self.check_x(data)  # names the type to use
        if len(data) == 0:
            raise DataError("the batch is empty; pass at least one datapoint")
        data = self.convert(data)
        self.check_x(data, full=True)
        return data

    def convert(self, batch: MultimodalBatch) -> MultimodalBatch:
        """``batch`` with images in the model's dtype and labels as ``long`` (unchanged if already so)."""
        dtype = next(self.parameters()).dtype
        values = {}
        for name, v in batch.values.items():
            kind = self.modalities.get(name)
            if kind == "image" and v.dtype != dtype:
                v = v.to(dtype)
            elif kind == "label" and v.dtype != torch.long and not v.is_floating_point():
                v = v.long()
            values[name] = v
        return MultimodalBatch(values, batch.present)
