"""NVAE's generative model (Vahdat & Kautz 2020): groups of spatial latents on a residual top-down path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.distributions import bernoulli
from vaezoo.errors import ConfigError
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.models.prior_handoff import PriorHandoff
from vaezoo.nets import Batched, GenerativeCell, SpectralNorms
from vaezoo.registry import register_model


@dataclass(frozen=True)
class NVAEConfig:
    x_shape: tuple[int, ...] = x_shape_field()
    canvas: int = field(
        default=32,
        metadata={"help": "side of the square the networks work on; images are zero-padded to it", "min": 2},
    )
    channels: int = field(default=4, metadata={"help": "channels at the canvas resolution", "min": 1})
    channel_mult: int = field(
        default=2,
        metadata={
            "help": "channels grow by this factor at each halving of the resolution",
            "min": 1,
            "max": 4,
        },
    )
    preprocess_blocks: int = field(
        default=2,
        metadata={
            "help": "halvings between the canvas and the bottom latent scale (and doublings after)",
            "min": 0,
        },
    )
    scales: int = field(
        default=2, metadata={"help": "latent scales, each half the resolution of the one below", "min": 1}
    )
    groups_per_scale: int = field(default=2, metadata={"help": "latent groups at each scale", "min": 1})
    latent_channels: int = field(default=8, metadata={"help": "latent channels per group", "min": 1})
    cells_per_group: int = field(
        default=1, metadata={"help": "generative residual cells between consecutive groups", "min": 0}
    )
    expansion: int = field(
        default=3,
        metadata={"help": "channel expansion of the generative cells' 1x1 convolution (paper: 6)", "min": 1},
    )
    bn_momentum: float = field(
        default=0.05, metadata={"help": "batch-norm running-average momentum", "above": 0, "max": 1}
    )
    min_scale: float = field(default=1e-3, metadata={"help": "floor on prior standard deviations", "min": 0})


@register_model("nvae", NVAEConfig)
class NVAE(LatentVariableModel):
    """NVAE's generative half; its guide ``"nvae"`` runs the same top-down path, with the same modules.

    Latent groups are numbered from the data up, ``z1`` (bottom scale, finest) to ``zL`` (top);
    ``L = scales * groups_per_scale``. Group l is a lattice of ``latent_channels`` channels at the
    resolution of its scale, one Pyro site with event shape ``(latent_channels, R_l, R_l)``.
    Generative story, with s the deterministic top-down state (an image of features)::

        s_L = h                                       a learned constant at the top resolution
        z_L ~ N(0, I)
        z_l ~ N(mu_l(s_l), diag sigma_l(s_l)^2)       l = L-1, ..., 1
              s_l = cells_l(combine_{l+1}(s_{l+1}, z_{l+1}))
        x   ~ Bernoulli(logits = crop(post(combine_1(s_1, z_1))))

    combine_l is a 1x1 convolution of the concatenation [s; z]; cells_l are ``cells_per_group``
    generative residual cells (:class:`~vaezoo.nets.GenerativeCell`: BN, 1x1 expansion, depthwise
    5x5, 1x1, BN, squeeze-and-excitation), preceded by an upsampling cell where the scale changes;
    (mu_l, sigma_l) come from ELU and a 1x1 convolution; post is ``preprocess_blocks`` upsampling
    cells up to the canvas and an ELU and 3x3 convolution to pixel logits. Images are zero-padded to
    ``canvas x canvas`` inside the networks (MNIST's 28 x 28 to 32 x 32) and the likelihood covers the
    original pixels only. Channels are ``channels * channel_mult^k`` after k halvings of the canvas.

    The inference network (:class:`~vaezoo.guides.nvae.NVAEGuide`) runs a bottom-up encoder, then
    this very top-down path, and parametrizes each posterior relative to the prior it computes
    there (residual Normal). As in the Ladder VAE, the model replayed on the guide's samples reuses
    the states and priors the guide computed on those tensors
    (:class:`~vaezoo.models.prior_handoff.PriorHandoff`) instead of running the path twice.
    KL warm-up, KL balancing and spectral regularization are the objective's job
    (:class:`~vaezoo.inference.NVAEObjective`); the model and guide each own a
    :class:`~vaezoo.nets.SpectralNorms` over their convolutions for it.

    Departures from the paper, for a CPU and a binary data set:

    - Bernoulli pixels instead of a discretized logistic mixture (the data are binarized MNIST).
    - No normalizing flows in the encoder cells, and no weight normalization of the convolutions.
    - Small sizes, so that an MNIST epoch takes minutes on one CPU thread: 4 channels at 32 x 32,
      hence 16 and 32 at the latent scales (the paper's MNIST model starts from 32 and grows the same
      way), expansion 3 (paper 6), latents of 8 channels at 8 x 8 and 4 x 4 in 2 groups per
      scale (paper: 20 channels, 5 groups per scale on MNIST), one cell per group and one cell per
      preprocessing block.
    - The prior's sigma is softplus + ``min_scale`` (the paper's implementation: exp of a soft-clamped
      log sigma), as in every vaezoo Gaussian layer; the prior's 1x1 convolution reads s alone.
    - Batch-norm momentum 0.05 (as the paper's implementation; PyTorch's default 0.1), and no
      penalty on the batch-norm scales (the paper's implementation regularizes them with the spectral
      norms).

    References:
        - Vahdat & Kautz (2020), NVAE: A Deep Hierarchical Variational Autoencoder, NeurIPS.
        - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational
          Inference with Inverse Autoregressive Flow, NIPS (the bidirectional ResNet VAE).
        - Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational Autoencoders, NIPS.
    """

    binary_data = True
    default_guide_name = "nvae"

    def __init__(self, config: NVAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self._check_geometry()
        n_groups = c.scales * c.groups_per_scale
        self.layer_sites = tuple(f"z{j + 1}" for j in range(n_groups))
        halvings = [c.preprocess_blocks + j // c.groups_per_scale for j in range(n_groups)]
        self.group_channels = tuple(c.channels * c.channel_mult**h for h in halvings)
        self.group_resolution = tuple(c.canvas // 2**h for h in halvings)
        self._prior_handoff = PriorHandoff()
        top = n_groups - 1
        self.h = nn.Parameter(torch.rand(self.group_channels[top], *[self.group_resolution[top]] * 2))
        lc, mom = c.latent_channels, c.bn_momentum
        self.top_down = nn.ModuleDict(
            {
                "prior": nn.ModuleList(
                    Batched(nn.Sequential(nn.ELU(), nn.Conv2d(d, 2 * lc, 1)), 3)
                    for d in self.group_channels[:top]
                ),
                "combine": nn.ModuleList(Batched(nn.Conv2d(d + lc, d, 1), 3) for d in self.group_channels),
                # between[j] leads from group j + 1 down to group j.
                "between": nn.ModuleList(Batched(self._cells(j), 3) for j in range(top)),
            }
        )
        post: list[nn.Module] = []
        d = self.group_channels[0]
        for _ in range(c.preprocess_blocks):
            post.append(
                GenerativeCell(d, d // c.channel_mult, upsample=2, expansion=c.expansion, momentum=mom)
            )
            d //= c.channel_mult
        post += [nn.ELU(), nn.Conv2d(d, self.x_shape[0], 3, padding=1)]
        self.post = Batched(nn.Sequential(*post), 3)
        self.spectral = SpectralNorms(self, types=(nn.Conv2d,))

    def _check_geometry(self) -> None:
        c, x_shape = self.config, self.x_shape
        if len(x_shape) != 3:
            raise ConfigError(f"model 'nvae' needs image data (C, H, W), got x_shape {x_shape}")
        if max(x_shape[1:]) > c.canvas:
            raise ConfigError(
                f"model 'nvae' pads images to a canvas of {c.canvas} x {c.canvas} and cannot produce "
                f"{x_shape[1]} x {x_shape[2]} images; set canvas (--canvas) to at least {max(x_shape[1:])}, "
                f"a multiple of {2 ** (c.preprocess_blocks + c.scales - 1)}"
            )
        halvings = c.preprocess_blocks + c.scales - 1
        if c.canvas % 2**halvings or c.canvas // 2**halvings < 2:
            raise ConfigError(
                f"canvas {c.canvas} cannot be halved {halvings} times (preprocess_blocks "
                f"{c.preprocess_blocks} + scales {c.scales} - 1) down to a top resolution of at least 2; "
                f"use a canvas that is a multiple of {2 ** (halvings + 1)}, or fewer blocks or scales"
            )

    def _cells(self, j: int) -> nn.Sequential:
        """The generative cells between group j + 1 and group j (an upsampling one where scales change)."""
        c = self.config
        d_in, d = self.group_channels[j + 1], self.group_channels[j]
        cells: list[nn.Module] = []
        if self.group_resolution[j] != self.group_resolution[j + 1]:
            cells.append(GenerativeCell(d_in, d, upsample=2, expansion=c.expansion, momentum=c.bn_momentum))
        cells += [
            GenerativeCell(d, d, expansion=c.expansion, momentum=c.bn_momentum)
            for _ in range(c.cells_per_group)
        ]
        return nn.Sequential(*cells)

    def default_guide_config(self) -> dict:
        return {"channels": self.config.channels, "bn_momentum": self.config.bn_momentum}

    def group_shape(self, j: int) -> tuple[int, int, int]:
        """Event shape of group ``j`` (0-based, bottom first): ``(latent_channels, R_j, R_j)``."""
        r = self.group_resolution[j]
        return (self.config.latent_channels, r, r)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """x zero-padded to the canvas (centred), any leading dimensions."""
        h, w = self.x_shape[1:]
        top, left = (self.config.canvas - h) // 2, (self.config.canvas - w) // 2
        return F.pad(x, (left, self.config.canvas - w - left, top, self.config.canvas - h - top))

    def crop(self, canvas: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`pad`: the original pixels of a canvas-sized tensor."""
        h, w = self.x_shape[1:]
        top, left = (self.config.canvas - h) // 2, (self.config.canvas - w) // 2
        return canvas[..., top : top + h, left : left + w]

    def initial_state(self, n: int) -> torch.Tensor:
        """s_L, the learned top state, for a batch of ``n``."""
        return self.h.expand(n, *self.h.shape)

    def prior_loc_scale(self, j: int, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of p(z_j | s_j), 0-based ``j``, each shaped ``(*s.shape[:-3], *group_shape(j))``;
        the top group's prior is N(0, I)."""
        if j == len(self.layer_sites) - 1:
            loc = s.new_zeros(()).expand(*s.shape[:-3], *self.group_shape(j))
            return loc, torch.ones_like(loc)
        loc, raw = self.top_down["prior"][j](s).chunk(2, dim=-3)
        return loc, F.softplus(raw) + self.config.min_scale

    def advance(self, j: int, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """From s_j and z_j: s_{j-1} (for ``j > 0``) or the final state the decoder reads (``j == 0``)."""
        lead = torch.broadcast_shapes(s.shape[:-3], z.shape[:-3])
        both = torch.cat([s.expand(*lead, *s.shape[-3:]), z.expand(*lead, *z.shape[-3:])], -3)
        t = self.top_down["combine"][j](both)
        return self.top_down["between"][j - 1](t) if j > 0 else t

    def hand_over(self, j: int, upper: Sequence[torch.Tensor], state: tuple) -> None:
        """Remember (s_j, mu_j, sigma_j) that a guide computed from ``upper`` = [z_{j+1}, ...] for the
        model's replay on the same tensors."""
        self._prior_handoff.put(j, upper, self.top_down, state)

    def x_dist(self, t: torch.Tensor) -> dist.Distribution:
        return bernoulli(self.crop(self.post(t)), 3)

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        n, top = x.shape[0], len(self.layer_sites) - 1
        s: torch.Tensor | None = None
        upper: list[torch.Tensor] = []
        with pyro.plate("data", n):
            for j in reversed(range(top + 1)):
                # The top group's state and prior are constants: nothing to hand over.
                handed = self._prior_handoff.take(j, upper, self.top_down) if j < top else None
                if handed is not None:
                    s, loc, scale = handed
                else:
                    s = self.initial_state(n) if j == top else self.advance(j + 1, s, upper[0])
                    loc, scale = self.prior_loc_scale(j, s)
                z = pyro.sample(self.layer_sites[j], dist.Normal(loc, scale).to_event(3))
                upper.insert(0, z)
            pyro.sample("x", self.x_dist(self.advance(0, s, upper[0])), obs=x)


__all__ = ["NVAE", "NVAEConfig"]
