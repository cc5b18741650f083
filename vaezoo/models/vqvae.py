"""The VQ-VAE's generative model (van den Oord et al. 2017): a map of discrete codes decoded by a CNN."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.distributions import CodeMap, bernoulli
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.nets import Codebook, CodebookUpdate, PixelCNN, map_decoder, map_shape
from vaezoo.registry import register_model


@dataclass(frozen=True)
class VQVAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    codebook_size: int = field(default=64, metadata={"help": "K, the number of codes (at least 2)", "min": 2})
    code_dim: int = field(default=16, metadata={"help": "D, the dimension of a code vector", "min": 1})
    downsample: int = field(
        default=2, metadata={"help": "halvings of H and W from image to code map (28x28 -> 7x7: 2)", "min": 0,
                             "max": 6}
    )
    channels: int = field(default=32, metadata={"help": "channels of the decoder's convolutions", "min": 1})
    likelihood: Literal["bernoulli", "gaussian"] = field(
        default="bernoulli", metadata={"help": "bernoulli for binary data, gaussian for real-valued"}
    )
    codebook_update: CodebookUpdate = field(
        default="loss", metadata={"help": "loss: the codebook loss trains the codes; ema: moving averages"}
    )
    ema_decay: float = field(default=0.99, metadata={"help": "decay of the EMA codebook update", "min": 0,
                                                      "below": 1})
    ema_epsilon: float = field(default=1e-5, metadata={"help": "Laplace smoothing of the EMA counts",
                                                        "above": 0})
    dead_after: int = field(
        default=50,
        metadata={"help": "restart a code unused for this many training batches", "min": 0, "zero": "never"},
    )
    init_from_data: bool = field(
        default=True,
        metadata={"help": "move the codes the first training batch leaves unused onto its encoder outputs"},
    )
    prior_channels: int = field(default=32, metadata={"help": "channels of the PixelCNN prior", "min": 1})
    prior_layers: int = field(default=5, metadata={"help": "masked layers of the PixelCNN prior", "min": 1})
    prior_kernel: int = field(default=3, metadata={"help": "odd kernel side of the PixelCNN prior", "min": 3})


@register_model("vqvae", VQVAEConfig)
class VQVAE(LatentVariableModel):
    """A map of discrete codes, each one of K learned vectors, decoded by a transposed-convolution net.

    Generative story (h x w code map, h = H / 2^downsample)::

        c ~ Uniform{1..K}^{h w}                        stage 1 (as in the paper)
        c ~ PixelCNN(c)                                stage 2, after fit_code_prior
        z = (e_{c_ij})_{ij}                            the code vectors, a (D, h, w) map
        x ~ Bernoulli(logits = g(z))                   likelihood="bernoulli"
        x ~ N(g(z), diag(sigma^2))                     likelihood="gaussian", sigma learned per pixel

    The latent site ``"z"`` holds the code vectors (a :class:`~vaezoo.distributions.CodeMap`), not the
    indices, so that its guide can hand the decoder a straight-through value. The codebook
    (:class:`~vaezoo.nets.Codebook`) belongs to the model: it is the prior's support and the decoder's
    input; the guide (``vq``) quantizes against it and, in training mode, moves it (EMA, dead-code
    restarts). With a deterministic guide, log p(x) >= log p(x | z_q) + log p(z_q), which is the ELBO.

    Stage 1 trains encoder, decoder and codebook with the uniform prior, whose KL is the constant
    hw log K. Stage 2 (:func:`~vaezoo.inference.fit_code_prior`) fits the PixelCNN prior to the code
    maps of the training set and sets the buffer ``prior_fitted``, after which p(z) is the PixelCNN's.

    Deviations: the paper's encoder and decoder have residual blocks and its prior is a gated PixelCNN
    with vertical and horizontal stacks; here both are smaller (one masked stack, see
    :class:`~vaezoo.nets.PixelCNN`) to train on a CPU.

    References:
        - van den Oord, Vinyals & Kavukcuoglu (2017), Neural Discrete Representation Learning, NIPS.
        - van den Oord et al. (2016), Conditional Image Generation with PixelCNN Decoders, NIPS.
    """

    default_guide_name = "vq"

    def __init__(self, config: VQVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.map_shape = map_shape(self.x_shape, c.downsample)
        self.codebook = Codebook(c.codebook_size, c.code_dim, c.codebook_update, c.ema_decay, c.ema_epsilon,
                                 c.dead_after, c.init_from_data)
        self.decoder = map_decoder(self.x_shape, c.channels, c.code_dim, c.downsample)
        k = c.codebook_size
        self.prior = PixelCNN(k, c.prior_channels, c.prior_layers, c.prior_kernel, k)
        self.register_buffer("prior_fitted", torch.tensor(False))
        if c.likelihood == "gaussian":
            self.raw_scale = nn.Parameter(torch.zeros(self.x_shape))

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(D, h, w): the shape of one datapoint's latent map."""
        return (self.config.code_dim, *self.map_shape)

    def default_guide_config(self) -> dict:
        return {"channels": self.config.channels}

    def prior_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """The PixelCNN prior's logits ``(..., K, h, w)`` of code maps ``(..., h, w)``."""
        one_hot = F.one_hot(codes, self.config.codebook_size).movedim(-1, -3)
        return self.prior(one_hot.to(self.codebook.vectors.dtype))

    def z_dist(self, x: torch.Tensor, learned: bool | None = None) -> CodeMap:
        """p(z) for a batch like ``x``: the PixelCNN prior once fitted (or with ``learned=True``)."""
        learned = bool(self.prior_fitted) if learned is None else learned
        return CodeMap(self.codebook.vectors, self.map_shape, (x.shape[0],),
                       self.prior_logits if learned else None)

    def code_log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) of code maps ``(n, h, w)`` under the PixelCNN prior (fitted or not), shape ``(n,)``."""
        return self.z_dist(codes, learned=True).code_log_prob(codes)

    def x_dist(self, z: torch.Tensor) -> dist.Distribution:
        out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            return bernoulli(out, len(self.x_shape))
        return dist.Normal(out, F.softplus(self.raw_scale) + 1e-3).to_event(len(self.x_shape))

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: the reconstruction of a code map (Bernoulli probabilities or Gaussian means)."""
        return self.x_dist(z).mean

    @property
    def binary_data(self) -> bool:
        return self.config.likelihood == "bernoulli"

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.z_dist(x))
            pyro.sample("x", self.x_dist(z), obs=x)
