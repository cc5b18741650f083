"""NVAE's inference network: a bottom-up residual encoder read by the model's own top-down path."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.models.base import check_shape
from vaezoo.nets import Batched, EncoderCell, SpectralNorms
from vaezoo.registry import register_guide


@dataclass(frozen=True)
class NVAEGuideConfig:
    channels: int = field(
        default=4,
        metadata={"help": "encoder channels at the canvas resolution (grow as the model's)", "min": 1},
    )
    cells_per_group: int = field(
        default=1, metadata={"help": "encoder residual cells before each group's features", "min": 0}
    )
    bn_momentum: float = field(
        default=0.05, metadata={"help": "batch-norm running-average momentum", "above": 0, "max": 1}
    )
    max_log_ratio: float = field(
        default=5.0,
        metadata={"help": "log(sigma_q / sigma_p) is soft-clamped to (-max, max)", "above": 0},
    )


def residual_normal(
    loc_p: torch.Tensor, scale_p: torch.Tensor, delta_loc: torch.Tensor, delta_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_q, sigma_q) = (mu_p + delta_mu, sigma_p * delta_sigma): the posterior relative to the prior."""
    return loc_p + delta_loc, scale_p * delta_scale


def residual_kl(delta_loc: torch.Tensor, delta_scale: torch.Tensor, scale_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_p + dmu, (sigma_p dsigma)^2) || N(mu_p, sigma_p^2)) per element, in closed form
    (Vahdat & Kautz 2020, eq. 2): (dmu^2 / sigma_p^2 + dsigma^2 - log dsigma^2 - 1) / 2.

    It does not depend on mu_p: the encoder's output alone sets how far q moves from the prior.
    """
    return 0.5 * ((delta_loc / scale_p).pow(2) + delta_scale.pow(2) - 2 * delta_scale.log() - 1)


@register_guide("nvae", NVAEGuideConfig)
class NVAEGuide(BoundGuide):
    """q(z | x) = q(z_L | x) prod_{l<L} q(z_l | z_{>l}, x), sampled top-down along the model's path.

    Bottom-up (deterministic), on x padded to the canvas: a 3x3 stem, ``preprocess_blocks`` stride-2
    :class:`~vaezoo.nets.EncoderCell` s, then per group (bottom first) ``cells_per_group`` encoder
    cells whose output is the group's feature image f_l, with a stride-2 cell between scales.

    Top-down (stochastic), through the model's own modules (:meth:`NVAE.advance
    <vaezoo.models.NVAE.advance>`, :meth:`~vaezoo.models.NVAE.prior_loc_scale`)::

        s_L = h;   s_l = cells_l(combine_{l+1}(s_{l+1}, z_{l+1}))
        (dmu_l, log dsigma_l) = sampler_l(f_l + conv1x1(s_l))           (f_L alone at the top)
        q(z_l | z_{>l}, x) = N(mu_p,l + dmu_l, (sigma_p,l * dsigma_l)^2)    (residual Normal, eq. 2)

    with (mu_p,l, sigma_p,l) = p(z_l | z_{>l}) computed from s_l, and sampler_l an ELU and a 3x3
    convolution. The KL of each group then depends on the encoder's output only through
    dmu / sigma_p and dsigma (:func:`residual_kl`), so q starts at the prior and moves away from it
    only as far as x asks. log dsigma is soft-clamped, ``m tanh(. / m)`` with m = ``max_log_ratio``,
    as in the paper's implementation.

    The guide is a :class:`~vaezoo.guides.bound.BoundGuide`: the top-down modules belong to the
    model, and the states and priors computed here are handed to the model's replay on the same
    samples. It owns a :class:`~vaezoo.nets.SpectralNorms` over its own convolutions.

    References:
        - Vahdat & Kautz (2020), NVAE: A Deep Hierarchical Variational Autoencoder, NeurIPS.
        - Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved Variational
          Inference with Inverse Autoregressive Flow, NIPS.
    """

    def __init__(self, model, config: NVAEGuideConfig | dict | None = None, **overrides):
        super().__init__(model)
        c = self.config = resolve(NVAEGuideConfig, config, overrides)
        needed = ("layer_sites", "group_channels", "group_resolution", "advance", "hand_over", "pad")
        if not all(hasattr(model, a) for a in needed):
            raise ConfigError(
                f"guide 'nvae' runs the top-down path of model 'nvae', which {type(model).__name__} "
                "does not have; use that model's default_guide() instead"
            )
        m = model.config
        mom = c.bn_momentum
        self.x_shape = model.x_shape
        self.layer_sites = tuple(model.layer_sites)
        n_groups = len(self.layer_sites)
        widths = [c.channels * m.channel_mult**k for k in range(m.preprocess_blocks + m.scales)]
        pre: list[nn.Module] = [nn.Conv2d(self.x_shape[0], widths[0], 3, padding=1)]
        pre += [
            EncoderCell(widths[k], widths[k + 1], stride=2, momentum=mom) for k in range(m.preprocess_blocks)
        ]
        self.stem = Batched(nn.Sequential(*pre), 3)
        enc = [widths[m.preprocess_blocks + j // m.groups_per_scale] for j in range(n_groups)]
        self.cells = nn.ModuleList(
            nn.Sequential(*[EncoderCell(e, e, momentum=mom) for _ in range(c.cells_per_group)]) for e in enc
        )
        # down[j]: after group j's feature, towards group j + 1 (stride 2 where the scale changes).
        self.down = nn.ModuleList(
            EncoderCell(enc[j], enc[j + 1], stride=2, momentum=mom)
            if model.group_resolution[j + 1] != model.group_resolution[j]
            else nn.Identity()
            for j in range(n_groups - 1)
        )
        self.combine = nn.ModuleList(
            Batched(nn.Conv2d(d, e, 1), 3) for d, e in zip(model.group_channels[:-1], enc[:-1], strict=True)
        )
        lc = m.latent_channels
        self.sampler = nn.ModuleList(
            Batched(nn.Sequential(nn.ELU(), nn.Conv2d(e, 2 * lc, 3, padding=1)), 3) for e in enc
        )
        self.spectral = SpectralNorms(self, types=(nn.Conv2d,))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """f_l per group, bottom first, from a batch of images ``(n, *x_shape)``."""
        h = self.stem(self.model.pad(x))
        out = []
        for j, cells in enumerate(self.cells):
            h = cells(h)
            out.append(h)
            if j < len(self.down):
                h = self.down[j](h)
        return out

    def forward(self, x: torch.Tensor) -> None:
        check_shape(x, self.x_shape, type(self).__name__)
        model, n = self.model, x.shape[0]
        feats = self.features(x)
        top, bound = len(feats) - 1, self.config.max_log_ratio
        s: torch.Tensor | None = None
        upper: list[torch.Tensor] = []
        with pyro.plate("data", n):
            for j in reversed(range(top + 1)):
                s = model.initial_state(n) if j == top else model.advance(j + 1, s, upper[0])
                loc_p, scale_p = model.prior_loc_scale(j, s)
                if j < top:
                    model.hand_over(j, upper, (s, loc_p, scale_p))
                h = feats[j] if j == top else feats[j] + self.combine[j](s)
                delta_loc, raw = self.sampler[j](h).chunk(2, dim=-3)
                delta_scale = torch.exp(bound * torch.tanh(raw / bound))
                loc, scale = residual_normal(loc_p, scale_p, delta_loc, delta_scale)
                upper.insert(0, pyro.sample(self.layer_sites[j], dist.Normal(loc, scale).to_event(3)))


__all__ = ["NVAEGuide", "NVAEGuideConfig", "residual_kl", "residual_normal"]
