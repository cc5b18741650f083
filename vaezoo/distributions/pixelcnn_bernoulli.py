"""An autoregressive Bernoulli distribution over binary images: a PixelCNN's logits, pixel by pixel."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints

#: ``net(x, condition) -> logits``, each of shape ``(..., C, H, W)``, the logit at a pixel a function
#: of the pixels before it in raster order (and of the condition) only.
LogitNet = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PixelCNNBernoulli(TorchDistribution):
    """p(x | h) = prod_i Bernoulli(x_i; sigmoid(net(x, h)_i)), over pixels i in raster order.

    ``net`` is autoregressive (:class:`~vaezoo.nets.PixelCNN`): its logit at pixel i reads only the
    pixels before i, so the product is a normalized distribution over binary images and
    :meth:`log_prob` is exact for any image in one network pass (teacher forcing). Drawing needs one
    pass per pixel (:meth:`sample`). Channels of one pixel are independent given the pixels before it.

    ``condition`` is a map ``(*batch_shape, C_h, H, W)`` read pixel by pixel (the network's output at
    a pixel may read the condition at that pixel and earlier ones); leading dimensions of a value and
    of the condition broadcast, as in the network.

    ``mean``: E[x | h] has no closed form (it sums over all earlier pixels). This distribution
    returns the probabilities with which one ancestral draw took each pixel, which is what a PixelVAE
    shows as a picture of p(x | z); it is random, and not the expectation.

    :param net: the autoregressive logit network.
    :param condition: the map the network is conditioned on, e.g. features of z at every pixel.
    :param image_shape: (C, H, W) of one image.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 3)
    has_rsample = False

    def __init__(self, net: LogitNet, condition: torch.Tensor, image_shape: tuple[int, int, int]):
        self.net, self.condition = net, condition
        super().__init__(condition.shape[:-3], torch.Size(image_shape), validate_args=False)

    def expand(self, batch_shape, _instance=None) -> PixelCNNBernoulli:
        condition = self.condition.expand(*batch_shape, *self.condition.shape[-3:])
        return PixelCNNBernoulli(self.net, condition, tuple(self.event_shape))

    def logits(self, value: torch.Tensor) -> torch.Tensor:
        """The logit of every pixel given the pixels of ``value`` before it (teacher forcing)."""
        return self.net(value, self.condition)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.logits(value)
        logits, value = torch.broadcast_tensors(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum((-3, -2, -1))

    @torch.no_grad()
    def sample_with_probs(self, sample_shape: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """One ancestral draw and the probability each pixel was drawn with, both ``(*shape, C, H, W)``.

        Pixel (i, j) is drawn from the network's output on the image drawn so far. Each pass reads
        only the window that output can depend on: rows up to i, and, when the network declares its
        reach (``net.field.up``, as :class:`~vaezoo.nets.PixelCNN` does), at most that many rows
        above and columns either side. Zero padding at the window's edges reaches only outputs
        outside the needed one, so the numbers are those of a full pass. A network with no masked
        layers (``field.layers == 0``: pixels independent given the condition) is run once.
        Nothing is cached between passes.
        """
        shape = torch.Size(sample_shape) + self.batch_shape
        h = self.condition.expand(*shape, *self.condition.shape[-3:])
        x = h.new_zeros(*shape, *self.event_shape)
        _, height, width = self.event_shape
        field = getattr(self.net, "field", None)
        if field is not None and field.layers == 0:
            probs = torch.sigmoid(self.net(x, h))
            return torch.bernoulli(probs), probs
        reach = field.up if field is not None else max(height, width)
        probs = torch.zeros_like(x)
        for i in range(height):
            r0 = max(0, i - reach)
            for j in range(width):
                c0, c1 = max(0, j - reach), min(width, j + reach + 1)
                window = (..., slice(r0, i + 1), slice(c0, c1))
                p = torch.sigmoid(self.net(x[window], h[window])[..., i - r0, j - c0])
                probs[..., i, j] = p
                x[..., i, j] = torch.bernoulli(p)
        return x, probs

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.sample_with_probs(sample_shape)[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.sample_with_probs()[1]


__all__ = ["LogitNet", "PixelCNNBernoulli"]
