"""The amortized encoder with per-datapoint corrections on chosen latent sites: its local optimum.

For the per-site amortization gap (:mod:`vaezoo.analysis.site_gap`) the locally optimized q* must
keep the encoder's structure (a Ladder VAE's q(z_l | z_{l+1}, x) conditions on the layer above), so
that each site still has its own conditional density and its own KL term, and it must contain the
encoder itself, so that refining one site alone can only gain. :class:`LocalCorrection` is that
family: every corrected site gets a free shift and log-scale per datapoint around the encoder's
own conditional, all other sites are the encoder's, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger

from vaezoo.errors import ConfigError
from vaezoo.guides.local import _Local
from vaezoo.nets import frozen


@dataclass(frozen=True)
class LocalCorrectionConfig:
    n_data: int = field(
        default=1, metadata={"help": "number of datapoints (rows of x) with parameters", "min": 1}
    )
    sites: tuple[str, ...] = field(
        default=(), metadata={"help": "latent sites given local corrections (empty: all)"}
    )


def corrected(fn: dist.Distribution, shift: torch.Tensor, log_scale: torch.Tensor) -> dist.Distribution:
    """``fn`` moved by the affine map z -> m + exp(log_scale) (z - m) + shift, m = E_fn[z].

    For a (possibly conditional) diagonal Gaussian this is N(mu + shift, (sigma exp(log_scale))^2),
    built as a Normal so closed-form KL terms still apply; any other distribution with a mean and
    reparameterized draws (e.g. a full-covariance posterior) is pushed through the map. ``shift`` and
    ``log_scale`` have shape ``(batch, *event)`` and broadcast against particle dims on the left.
    """
    event_dim = len(fn.event_shape)
    base = fn.base_dist if isinstance(fn, dist.Independent) else fn
    if isinstance(base, dist.Normal):
        moved = dist.Normal(base.loc + shift, base.scale * log_scale.exp())
        return moved.to_event(event_dim) if event_dim else moved
    if not fn.has_rsample:
        raise ConfigError(f"a local correction needs reparameterized draws, which {type(fn).__name__} lacks")
    scale = log_scale.exp()
    affine = dist.transforms.AffineTransform(fn.mean * (1 - scale) + shift, scale, event_dim=event_dim)
    return dist.TransformedDistribution(fn, [affine])


class _Correct(Messenger):
    """Replaces the distribution of the corrected guide sites as the encoder samples them."""

    def __init__(self, pieces: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.pieces = pieces

    def _pyro_sample(self, msg: dict) -> None:
        piece = self.pieces.get(msg["name"])
        if piece is not None and not msg["is_observed"]:
            msg["fn"] = corrected(msg["fn"], *piece)


class LocalCorrection(_Local):
    """q(z | x_i) = the encoder's q with sites in ``sites`` replaced by locally corrected conditionals.

    For each corrected site l and datapoint i, with the encoder's conditional
    q(z_l | pa_l, x_i) = N(mu_l(pa_l, x_i), diag sigma_l(pa_l, x_i)^2) (pa_l: the guide sites drawn
    before z_l)::

        q_i(z_l | pa_l) = N(mu_l(pa_l, x_i) + a_il, diag (sigma_l(pa_l, x_i) exp(b_il))^2)

    with free (a_il, b_il), started at 0 (the encoder exactly) and fitted by :meth:`fit_local`
    against the fixed model; the encoder's weights stay fixed. For a mean-field encoder this is the
    fully factorized Gaussian family of :class:`~vaezoo.guides.local.LocalNormal`, started at the
    encoder; for a conditional one (Ladder VAE, bottom-up chains) the dependence on the parents is
    the encoder's, the correction local. Sites whose q is not Gaussian are moved by the same affine
    map about their mean. Like every local guide it holds parameters for one batch, in order.

    References:
        - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML.
        - Kim, Wiseman, Miller, Sontag & Rush (2018), Semi-Amortized Variational Autoencoders, ICML
          (refining the encoder's output per datapoint).
    """

    config_class = LocalCorrectionConfig

    def __init__(self, model, encoder, config: LocalCorrectionConfig | dict | None = None, **overrides):
        super().__init__(model, config, **overrides)
        unknown = sorted(set(self.config.sites) - set(self.layout.names))
        if unknown:
            raise ConfigError(
                f"sites {unknown} are not latent sites of {type(model).__name__}; "
                f"choose from {self.layout.names}"
            )
        # Not a submodule: the encoder's weights are fixed and must stay out of parameters().
        self.__dict__["_encoder"] = encoder

    @property
    def encoder(self):
        return self.__dict__["_encoder"]

    def init_from(self, guide, x: torch.Tensor) -> None:
        raise ConfigError("a LocalCorrection starts at its encoder (zero correction); it takes no init_from")

    def forward(self, x: torch.Tensor) -> None:
        self._check(x)
        chosen = set(self.config.sites or self.layout.names)
        pieces = {}
        parts = zip(
            self.loc.split(self.layout.sizes, -1), self.log_scale.split(self.layout.sizes, -1), strict=True
        )
        for name, shape, (a, b) in zip(self.layout.names, self.layout.event_shapes, parts, strict=True):
            if name in chosen:
                pieces[name] = (a.reshape(-1, *shape), b.reshape(-1, *shape))
        with frozen(self.encoder), _Correct(pieces):
            self.encoder(x)
