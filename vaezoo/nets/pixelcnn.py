"""A PixelCNN: masked convolutions with gated activations, optionally conditioned on a vector or a map.

Shared by the PixelVAE decoder (conditioned on z) and the VQ-VAE prior (over the code map).

References:
    - van den Oord, Kalchbrenner & Kavukcuoglu (2016), Pixel Recurrent Neural Networks, ICML.
    - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016), Conditional Image
      Generation with PixelCNN Decoders, NIPS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vaezoo.errors import ConfigError, DataError

MASK_TYPES = ("A", "B")


class MaskedConv2d(nn.Conv2d):
    """A "same"-padded square convolution that sees only earlier pixels in raster order.

    Mask type ``"A"`` hides the centre pixel (the first layer, which reads the image: its output at
    pixel i must not see pixel i); type ``"B"`` shows it (later layers, whose input at pixel i
    already depends on earlier pixels only). All input channels form one group: there is no
    ordering of colour channels within a pixel (the R-G-B masks of van den Oord et al.), so every
    output channel at pixel i sees every input channel at the earlier pixels.

    :param channels_in: input channels.
    :param channels_out: output channels.
    :param kernel_size: odd side length k; the kernel sees k // 2 rows above and columns either side.
    :param mask_type: ``"A"`` or ``"B"``.
    """

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, mask_type: str):
        if mask_type not in MASK_TYPES:
            raise ConfigError(f"mask type must be 'A' (first layer: hides the current pixel) or 'B' "
                              f"(later layers: shows it), got {mask_type!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"a masked convolution needs an odd kernel_size >= 1 (it has a centre "
                              f"pixel), got {kernel_size}")
        super().__init__(channels_in, channels_out, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        c = kernel_size // 2
        mask = torch.zeros(kernel_size, kernel_size)
        mask[:c] = 1
        mask[c, : c + (mask_type == "B")] = 1
        self.register_buffer("mask", mask.expand_as(self.weight).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class GatedMaskedLayer(nn.Module):
    """One layer: ``tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h)``, a 1x1 conv, and ``+ x`` if type B.

    ``W`` is a :class:`MaskedConv2d`; ``V h`` is a linear map of a condition vector (the same at every
    pixel) or a 1x1 convolution of a condition map (pixel by pixel). With ``masked=False`` there is no
    ``W * x`` term at all: the output depends on h only (a PixelCNN with no autoregressive layers).
    The residual connection is skipped in the type-A layer, where it would pass pixel i to itself.

    :param channels_in: input channels (the image's for type A, ``hidden`` for type B).
    :param hidden: output channels.
    :param kernel_size: side of the masked kernel.
    :param mask_type: ``"A"`` or ``"B"``.
    :param condition_dim: size of a condition vector, or None.
    :param condition_channels: channels of a condition map, or None.
    :param masked: False for the context-free layer (no masked convolution).
    """

    def __init__(self, channels_in: int, hidden: int, kernel_size: int, mask_type: str,
                 condition_dim: int | None = None, condition_channels: int | None = None,
                 masked: bool = True):
        super().__init__()
        self.conv = MaskedConv2d(channels_in, 2 * hidden, kernel_size, mask_type) if masked else None
        self.residual = masked and mask_type == "B" and channels_in == hidden
        if condition_dim is not None:
            self.condition: nn.Module | None = nn.Linear(condition_dim, 2 * hidden)
        elif condition_channels is not None:
            self.condition = nn.Conv2d(condition_channels, 2 * hidden, 1)
        else:
            self.condition = None
        # The context-free layer without a condition still needs its (learned, constant) gate input.
        self.bias = nn.Parameter(torch.zeros(2 * hidden)) if self.conv is None else None
        self.out = nn.Conv2d(hidden, hidden, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        n, _, height, width = x.shape
        if self.conv is not None:
            a = self.conv(x)
        else:
            a = self.bias[:, None, None].expand(n, -1, height, width)
        if self.condition is not None:
            v = self.condition(h)
            a = a + (v[..., None, None] if v.dim() == 2 else v)
        f, g = a.chunk(2, dim=1)
        y = self.out(torch.tanh(f) * torch.sigmoid(g))
        return x + y if self.residual else y


@dataclass(frozen=True)
class ReceptiveField:
    """Which earlier pixels one output pixel of a masked stack sees, on an unbounded image.

    With h = kernel_size // 2 and L layers (``a_layers`` of them type A): r rows up (1 <= r <= L h)
    it sees the columns from L h to the left to ``right(r)`` = h min(L, r) - max(0, a - min(L, r))
    to the right; on its own row, the columns L h to a to the left. Rows far up see L h columns to
    the right, but the nearest rows only h r: the triangle above-right of the pixel that a plain
    masked stack never sees (the "blind spot").

    :param layers: L, the number of masked layers.
    :param kernel_size: side of the masked kernels.
    :param a_layers: how many of them are type A (1 in a standard stack).
    """

    layers: int
    kernel_size: int
    a_layers: int = 1

    @property
    def up(self) -> int:
        """Rows above the pixel that are (partly) visible."""
        return self.layers * (self.kernel_size // 2)

    @property
    def left(self) -> int:
        """Columns to the left that are visible (on every visible row)."""
        return self.up

    def right(self, rows_up: int) -> int:
        """Columns to the right visible ``rows_up`` rows above (negative: none, on the pixel's own row)."""
        if rows_up == 0:
            return -self.a_layers if self.layers else -self.left - 1
        m = min(self.layers, rows_up)
        return (self.kernel_size // 2) * m - max(0, self.a_layers - m)

    def sees(self, rows_up: int, cols_right: int) -> bool:
        """Whether the pixel ``rows_up`` rows above and ``cols_right`` columns right is visible."""
        if rows_up < 0 or rows_up > self.up or self.layers == 0:
            return False
        return -self.left <= cols_right <= self.right(rows_up)

    @property
    def size(self) -> int:
        """The number of visible pixels (away from the image's edges)."""
        return sum(max(0, self.right(r) + self.left + 1) for r in range(self.up + 1)) if self.layers else 0


def receptive_field(layers: int, kernel_size: int) -> ReceptiveField:
    """The :class:`ReceptiveField` of a standard :class:`PixelCNN` (one type-A layer, then type B)."""
    return ReceptiveField(layers, kernel_size, 1 if layers else 0)


class PixelCNN(nn.Module):
    """Per-pixel outputs ``(..., out_channels_per_pixel, H, W)`` of an image ``x`` of ``(..., C, H, W)``.

    The output at pixel i is a function of the pixels before i in raster order (rows top to bottom,
    each left to right) and of the condition only: a type-A :class:`GatedMaskedLayer`, ``layers - 1``
    type-B ones with residual connections, then ReLU and a 1x1 convolution. ``layers=0`` means no
    autoregressive context: a single gated layer with no masked convolution feeds the head, so each
    pixel's output depends on the condition alone (pixels independent given z; without a condition,
    one learned output shared by every pixel). :attr:`field` says which earlier pixels are seen.

    The condition is either a vector (``condition_dim``, shape ``(..., D)``, e.g. z, mapped by a
    linear layer per layer and added at every pixel) or a map of the image's size
    (``condition_channels``, shape ``(..., C_h, H, W)``, e.g. PixelVAE's upsampled z, added through a
    1x1 convolution per layer). Leading dimensions of ``x`` and the condition broadcast against each
    other (so a batch of images meets particles of z of shape ``(K, N, D)``) and are flattened for the
    convolutions.

    Deviations: one stack of masked convolutions, as in the first PixelCNN, with the gated units of
    the conditional PixelCNN but without its vertical and horizontal stacks. Such a stack has a blind
    spot: r < ``layers`` rows above, only ``r * (kernel_size // 2)`` columns to the right are seen,
    against ``layers * (kernel_size // 2)`` to the left (see :class:`ReceptiveField`). Colour channels
    within a pixel are not ordered (see :class:`MaskedConv2d`): with C > 1 the channels of one pixel
    are independent given the context.

    :param channels_in: C, the image's channels (for a categorical map: one-hot classes).
    :param hidden: channels of every gated layer.
    :param layers: number of masked layers (0: none).
    :param kernel_size: odd side of the masked kernels, at least 3.
    :param out_channels_per_pixel: output channels (e.g. 1 Bernoulli logit, or 256 logits per channel).
    :param condition_dim: size of a condition vector, or None.
    :param condition_channels: channels of a condition map, or None (at most one of the two).
    :param mask_types: the mask of each masked layer; default ``"A"`` then ``"B"``. It must start with
        ``"A"``: the first layer reads the image, and a ``"B"`` there would let pixel i see itself.
        A later ``"A"`` is safe but narrows the context and drops that layer's residual connection.

    References:
        - van den Oord, Kalchbrenner & Kavukcuoglu (2016), Pixel Recurrent Neural Networks, ICML.
        - van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016), Conditional
          Image Generation with PixelCNN Decoders, NIPS.
    """

    def __init__(self, channels_in: int, hidden: int, layers: int, kernel_size: int,
                 out_channels_per_pixel: int, condition_dim: int | None = None,
                 condition_channels: int | None = None, mask_types: Sequence[str] | None = None):
        super().__init__()
        if min(channels_in, hidden, out_channels_per_pixel) < 1 or layers < 0:
            raise ConfigError(f"PixelCNN needs channels_in, hidden, out_channels_per_pixel >= 1 and "
                              f"layers >= 0, got {channels_in}, {hidden}, {out_channels_per_pixel}, {layers}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ConfigError(f"PixelCNN kernel_size must be odd and >= 3 (a 1x1 masked kernel sees no "
                              f"earlier pixel; use layers=0 for no context), got {kernel_size}")
        if condition_dim is not None and condition_channels is not None:
            raise ConfigError("PixelCNN takes a condition vector (condition_dim) or a condition map "
                              "(condition_channels), not both")
        if min(condition_dim or 1, condition_channels or 1) < 1:
            raise ConfigError(f"condition_dim and condition_channels must be >= 1 (or None), got "
                              f"{condition_dim}, {condition_channels}")
        default = ("A",) + ("B",) * (layers - 1) if layers else ()
        types = default if mask_types is None else tuple(mask_types)
        if len(types) != layers or any(t not in MASK_TYPES for t in types):
            raise ConfigError(f"mask_types must give 'A' or 'B' for each of the {layers} layers, got {types}")
        if types and types[0] != "A":
            raise ConfigError(f"the first masked layer reads the image, so its mask must be 'A' (type "
                              f"{types[0]!r} would let the output at a pixel see that pixel); got {types}")
        self.channels_in = channels_in
        self.condition_dim, self.condition_channels = condition_dim, condition_channels
        self.field = ReceptiveField(layers, kernel_size, types.count("A"))
        cond = {"condition_dim": condition_dim, "condition_channels": condition_channels}
        if layers == 0:
            stack = [GatedMaskedLayer(hidden, hidden, kernel_size, "B", **cond, masked=False)]
        else:
            stack = [GatedMaskedLayer(channels_in if i == 0 else hidden, hidden, kernel_size, t, **cond)
                     for i, t in enumerate(types)]
        self.stack = nn.ModuleList(stack)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, out_channels_per_pixel, 1))

    def _flat(
        self, x: torch.Tensor, h: torch.Tensor | None
    ) -> tuple[torch.Size, torch.Tensor, torch.Tensor | None]:
        """Check the shapes, broadcast the leading dimensions and flatten them into one."""
        if x.dim() < 3 or x.shape[-3] != self.channels_in:
            raise DataError(f"PixelCNN input must be (..., {self.channels_in}, H, W), got {tuple(x.shape)}")
        if (h is None) != (self.condition_dim is None and self.condition_channels is None):
            built = "without" if h is not None else "with"
            raise DataError(f"PixelCNN was built {built} a condition; pass one exactly when condition_dim "
                            "or condition_channels is set")
        if h is None:
            return x.shape[:-3], x.reshape(-1, *x.shape[-3:]), None
        if self.condition_dim is not None:
            event: tuple[int, ...] = (self.condition_dim,)
        else:
            event = (self.condition_channels, *x.shape[-2:])
        if h.dim() < len(event) or tuple(h.shape[-len(event):]) != event:
            raise DataError(f"PixelCNN condition must be (..., {', '.join(map(str, event))}) for an input of "
                            f"shape {tuple(x.shape)}, got {tuple(h.shape)}")
        try:
            lead = torch.broadcast_shapes(x.shape[:-3], h.shape[: h.dim() - len(event)])
        except RuntimeError:
            raise DataError(f"the leading dimensions of the PixelCNN input {tuple(x.shape)} and condition "
                            f"{tuple(h.shape)} do not broadcast") from None
        x = x.expand(*lead, *x.shape[-3:]).reshape(-1, *x.shape[-3:])
        return lead, x, h.expand(*lead, *event).reshape(-1, *event)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        lead, a, h = self._flat(x, condition)
        for layer in self.stack:
            a = layer(a, h)
        y = self.head(a)
        return y.reshape(*lead, *y.shape[1:])


__all__ = ["GatedMaskedLayer", "MaskedConv2d", "PixelCNN", "ReceptiveField", "receptive_field"]
