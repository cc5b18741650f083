"""The VQ-VAE's guide: a deterministic posterior at the nearest code of a convolutional encoder's output."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.models.base import check_shape
from vaezoo.nets import QUANTIZATION, Codebook, Quantization, map_encoder
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class VQGuideConfig:
    channels: int = field(default=32, metadata={"help": "channels of the encoder's convolutions", "min": 1})


@register_guide("vq", VQGuideConfig)
class VQGuide(BoundGuide):
    """q(z | x) = delta(z - z_q(x)): one-hot on the nearest code at every position of z_e(x).

    The encoder maps x to z_e, a ``(D, h, w)`` map; each position is replaced by its nearest vector of
    the model's codebook, z_q. The site's value is z_q in value and z_e in gradient (the
    straight-through estimator, ``z_e + sg[z_q - z_e]``), so the decoder's gradient reaches the
    encoder. As a distribution over code indices q is one-hot, so log q(z_q | x) = 0.

    The site carries the :class:`~vaezoo.nets.Quantization` (z_e, codes, z_q) in
    ``infer["quantization"]``, the hook through which the ``vq`` objective adds the codebook and
    commitment losses. In training mode each call first updates the codebook (EMA, dead-code restarts,
    as the model's config says); in eval mode it leaves it alone.

    Serves any model with a :class:`~vaezoo.nets.Codebook` as ``model.codebook`` and a ``code_shape``
    ``(D, h, w)`` (the ``vqvae`` model); raises :class:`ConfigError` otherwise.

    References:
        - van den Oord, Vinyals & Kavukcuoglu (2017), Neural Discrete Representation Learning, NIPS.
        - Bengio, Léonard & Courville (2013), Estimating or Propagating Gradients Through Stochastic
          Neurons for Conditional Computation (the straight-through estimator).
    """

    def __init__(self, model, config: VQGuideConfig | dict | None = None, **overrides):
        super().__init__(model)
        self.config = resolve(VQGuideConfig, config, overrides)
        if not isinstance(getattr(model, "codebook", None), Codebook):
            name = type(model).__name__
            raise ConfigError(f"guide 'vq' quantizes against the model's codebook, and {name} "
                              "has none; use a model with a codebook (vqvae) or another guide")
        self.x_shape = model.x_shape
        code_dim, h, _ = model.code_shape
        downsample = (model.x_shape[1] // h).bit_length() - 1  # the model's code map is H / 2^downsample high
        self.encoder = map_encoder(model.x_shape, self.config.channels, code_dim, downsample)

    def quantize(self, x: torch.Tensor) -> Quantization:
        """Encode and quantize ``x``; updates the codebook in training mode."""
        check_shape(x, self.x_shape, type(self).__name__)
        return self.model.codebook.quantize(self.encoder(x), update=self.training)

    def forward(self, x: torch.Tensor) -> None:
        q = self.quantize(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(q.straight_through, event_dim=3), infer={QUANTIZATION: q})
