"""PixelVAE (Gulrajani et al. 2017): a VAE whose decoder is a PixelCNN conditioned on the latents."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch

from vaezoo.distributions import PixelCNNBernoulli
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.nets import Activation, PixelCNN, deconv_stack, mlp, normal_head, upsampling_factor, vector_to_map
from vaezoo.registry import register_model


@dataclass(frozen=True)
class PixelVAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    levels: int = field(
        default=1, metadata={"help": "1: z -> x; 2: z2 -> z1 (a latent map) -> x", "min": 1, "max": 2}
    )
    z_dim: int = field(
        default=32, metadata={"help": "size of z (levels 1) or of the top latent z2", "min": 1}
    )
    latent_channels: int = field(
        default=4,
        metadata={"help": "channels of the latent map z1 (levels 2), at the image's side / 2^k", "min": 1},
    )
    upsample_channels: tuple[int, ...] = field(
        default=(32, 32),
        metadata={
            "help": "channels of the k stride-2 transposed convolutions that bring z (or z1) up to the "
            "image's size, from the image's resolution down; image sides must be multiples of 2^k",
            "min": 1,
        },
    )
    condition_channels: int = field(
        default=16, metadata={"help": "channels of the map of z that every PixelCNN layer reads", "min": 1}
    )
    layers: int = field(
        default=3,
        metadata={"help": "masked PixelCNN layers", "min": 0, "max": 64,
                  "zero": "pixels independent given z (a factorized decoder)"},
    )
    kernel_size: int = field(
        default=5, metadata={"help": "odd side of the masked kernels", "min": 3, "max": 15}
    )
    channels: int = field(default=16, metadata={"help": "channels of every gated PixelCNN layer", "min": 1})
    prior_hidden: int = field(
        default=128, metadata={"help": "width of the MLP from z2 to p(z1 | z2) (levels 2)", "min": 1}
    )
    activation: Activation = "relu"
    min_scale: float = field(default=1e-4, metadata={"help": "floor on prior standard deviations", "min": 0})


@register_model("pixel_vae", PixelVAEConfig)
class PixelVAE(LatentVariableModel):
    """A VAE with an autoregressive decoder: a PixelCNN over the pixels, conditioned on a map of z.

    Generative story, one level (``levels=1``)::

        z   ~ N(0, I_{z_dim})
        h   = U(z)                                   a map (condition_channels, H, W)
        x_i ~ Bernoulli(sigmoid(PixelCNN(x_{<i}, h)_i))   i = 1..HW in raster order

    two levels (``levels=2``; z1 a latent map of ``latent_channels`` at (H, W) / 2^k)::

        z2  ~ N(0, I_{z_dim})
        z1  ~ N(mu(z2), diag sigma(z2)^2)            factorized over the map's units
        h   = U'(z1)                                 a map (condition_channels, H, W)
        x_i ~ Bernoulli(sigmoid(PixelCNN(x_{<i}, h)_i))

    U is a dense layer to a coarse map and k = ``len(upsample_channels)`` 4x4 stride-2 transposed
    convolutions (:func:`~vaezoo.nets.vector_to_map`); U' a 3x3 convolution and the same
    transposed convolutions (:func:`~vaezoo.nets.deconv_stack`); mu, sigma an MLP of width
    ``prior_hidden``. The :class:`~vaezoo.nets.PixelCNN` has ``layers`` gated masked layers of
    ``channels`` channels and adds h at every layer through a 1x1 convolution. Its receptive field
    (``model.decoder.field``) grows with ``layers``: with 0 the pixels are independent given z (an
    ordinary convolutional VAE decoder), with many it covers most of the earlier pixels, and the
    latents have less left to explain (Chen et al. 2017). log p(x | z) is exact, one pass with the
    data as its own context (teacher forcing), so ELBOs and importance sampling apply unchanged;
    drawing x takes one pass per pixel (:meth:`generate`). Only a Bernoulli likelihood (binary
    images) is offered. The default guide is ``"amortized"`` for one level and the bottom-up Markov
    guide ``"bottom_up"`` (q(z1 | x) q(z2 | z1)) for two.

    Deviations from the paper: (1) the PixelCNN is vaezoo's one masked stack with gated units
    (:class:`~vaezoo.nets.PixelCNN`), not the paper's network and sizes, and it reads h through a
    1x1 convolution at every layer (the conditional PixelCNN's way) rather than concatenated with
    the image's features at the input; (2) in the
    hierarchical model the paper makes p(z1 | z2) itself a PixelCNN over the latent map (means and
    variances pixel by pixel); ours is factorized given z2, which keeps sampling z1 to one pass and
    leaves the autoregression to the pixels, the part the study of receptive fields varies; (3)
    MNIST pixels are Bernoulli (the paper's MNIST model too), with no 256-way softmax.

    References:
        - Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville (2017), PixelVAE: A Latent
          Variable Model for Natural Images, ICLR.
        - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016), Conditional
          Image Generation with PixelCNN Decoders, NIPS.
        - Chen, Kingma, Salimans, Duan, Dhariwal, Schulman, Sutskever & Abbeel (2017), Variational
          Lossy Autoencoder, ICLR.
    """

    binary_data = True

    def __init__(self, config: PixelVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        channels = tuple(c.upsample_channels)
        f = upsampling_factor(self.x_shape, channels, "PixelVAE")
        image_channels, height, width = self.x_shape
        cond_shape = (c.condition_channels, height, width)
        if c.levels == 1:
            self.layer_sites: tuple[str, ...] = ("z",)
            self.upsample = vector_to_map(c.z_dim, channels, cond_shape, c.activation)
        else:
            self.layer_sites = ("z1", "z2")
            self.z1_shape = (c.latent_channels, height // f, width // f)
            self.prior_net = mlp(
                (c.z_dim, c.prior_hidden, 2 * math.prod(self.z1_shape)), c.activation
            )
            self.upsample = deconv_stack(c.latent_channels, channels, c.condition_channels, c.activation)
        self.decoder = PixelCNN(
            image_channels, c.channels, c.layers, c.kernel_size, image_channels,
            condition_channels=c.condition_channels,
        )

    @property
    def default_guide_name(self) -> str:  # type: ignore[override]
        return "amortized" if self.config.levels == 1 else "bottom_up"

    def z_dist(self, x: torch.Tensor) -> dist.Distribution:
        """p(z) (one level) or p(z2) (two): a standard normal."""
        return dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.config.z_dim]).to_event(1)

    def z1_dist(self, z2: torch.Tensor) -> dist.Distribution:
        """p(z1 | z2), a diagonal Gaussian over the latent map."""
        loc, scale = normal_head(self.prior_net(z2), self.config.min_scale)
        shape = (*z2.shape[:-1], *self.z1_shape)
        return dist.Normal(loc.reshape(shape), scale.reshape(shape)).to_event(3)

    def x_dist(self, z: torch.Tensor) -> PixelCNNBernoulli:
        """p(x | z), from z (one level) or the latent map z1 (two)."""
        return PixelCNNBernoulli(self.decoder, self.upsample(z), self.x_shape)

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(self.layer_sites[-1], self.z_dist(x))
            if self.config.levels == 2:
                z = pyro.sample("z1", self.z1_dist(z))
            pyro.sample("x", self.x_dist(z), obs=x)

    @torch.no_grad()
    def generate(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` images drawn ancestrally from p(x), shape ``(n, *x_shape)``, pixel by pixel.

        With ``mean=True`` each pixel's probability under the model given the pixels drawn before
        it (and z) is returned instead of the binary draw, as papers show samples.
        """
        z = self.z_dist(self.example_x(n)).sample()
        if self.config.levels == 2:
            z = self.z1_dist(z).sample()
        x, probs = self.x_dist(z).sample_with_probs()
        return probs if mean else x


__all__ = ["PixelVAE", "PixelVAEConfig"]
