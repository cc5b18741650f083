"""The VRNN inference network: q(z_t | x_t, h_{t-1}), with h_{t-1} the model's own recurrent state."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.models.base import check_shape
from vaezoo.nets import Activation, cat_features, mlp, normal_head
from vaezoo.registry import register_guide
from vaezoo.sequences import step_mask


@dataclass(frozen=True)
class VRNNGuideConfig:
    hidden: tuple[int, ...] = field(
        default=(), metadata={"help": "encoder hidden widths (empty: the model's)", "min": 1}
    )
    activation: Activation | None = field(
        default=None, metadata={"help": "encoder activation (default: the model's)"}
    )


@register_guide("vrnn", VRNNGuideConfig)
class VRNNGuide(BoundGuide):
    """q(z_{<=T} | x_{<=T}) = prod_t q(z_t | x_{<=t}, z_{<t}), each a diagonal Gaussian::

        q(z_t | ...) = N(mu_z,t, diag sigma_z,t^2),   (mu_z,t, sigma_z,t) = phi_enc(phi_x(x_t), h_{t-1})
        h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1})          (the model's recurrence)

    As in the paper, the recurrent state is shared: h_{t-1} summarizes x_{<t} and z_{<t} through the
    model's own ``phi_x``, ``phi_z`` and GRU cell (``model.advance``), so q conditions on everything
    before step t. Ownership is explicit, as for the Ladder VAE's guide: the model owns those
    networks; this guide is a :class:`~vaezoo.guides.bound.BoundGuide` that reads them through
    :attr:`model` and owns only ``phi_enc``, so a checkpoint restores each parameter once and
    training optimizes the union (:func:`vaezoo.inference.fit.parameters`).

    Past a sequence's end (NaN steps, :mod:`vaezoo.sequences`) q is the model's prior
    p(z_t | h_{t-1}) itself, so those steps contribute exactly zero to log p - log q and to the KL.

    The model, replayed on this guide's draws, reuses the states computed here rather than running
    the recurrence again, as the paper's single network runs it once; values and gradients are
    those of the recomputation (tests/test_vrnn.py checks them).

    References:
        - Chung, Kastner, Dinh, Goel, Courville & Bengio (2015), A Recurrent Latent Variable Model
          for Sequential Data, NIPS.
    """

    def __init__(self, model, config: VRNNGuideConfig | dict | None = None, **overrides):
        super().__init__(model)
        c = self.config = resolve(VRNNGuideConfig, config, overrides)
        needs = ("phi_x", "advance", "prior_loc_scale", "initial_state", "steps", "z_dim")
        if not all(hasattr(model, a) for a in needs):
            raise ConfigError(
                f"guide 'vrnn' shares the recurrent state of a VRNN, which {type(model).__name__} does not "
                f"have (it needs {', '.join(needs)}, as model 'vrnn' provides); use that model's "
                "default_guide() instead"
            )
        mc = model.config
        self.x_shape = model.x_shape
        hidden = c.hidden or mc.hidden
        self.encoder = mlp((mc.feature + mc.h_dim, *hidden, 2 * mc.z_dim), c.activation or mc.activation)

    def forward(self, x: torch.Tensor) -> None:
        check_shape(x, self.x_shape, type(self).__name__)
        model = self.model
        mask = step_mask(x)
        padded = not bool(mask.all())
        given = x
        x = torch.nan_to_num(x, nan=0.0)
        h = model.initial_state(x)
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(model.steps)):
                feature = model.phi_x(x[:, t])
                loc, scale = normal_head(self.encoder(cat_features([feature, h])), model.config.min_scale)
                if padded and not bool(mask[:, t].all()):
                    here = mask[:, t, None]
                    prior_loc, prior_scale = model.prior_loc_scale(h)
                    loc, scale = torch.where(here, loc, prior_loc), torch.where(here, scale, prior_scale)
                z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1))
                if t + 1 < model.steps:
                    h = model.advance(given, t, z, feature, h)[1]


__all__ = ["VRNNGuide", "VRNNGuideConfig"]
