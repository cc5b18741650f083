"""The variational recurrent neural network's generative model (Chung et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.distributions import bernoulli
from vaezoo.errors import ConfigError
from vaezoo.models.base import LatentVariableModel, x_shape_field
from vaezoo.models.prior_handoff import PriorHandoff
from vaezoo.nets import Activation, cat_features, mlp, normal_head
from vaezoo.registry import register_model
from vaezoo.sequences import check_padding, step_mask


@dataclass(frozen=True)
class VRNNConfig:
    x_shape: tuple[int, ...] = x_shape_field((28, 28))
    z_dim: int = field(default=16, metadata={"help": "latent dimension per step", "min": 1})
    h_dim: int = field(default=64, metadata={"help": "recurrent state size (GRU)", "min": 1})
    feature: int = field(
        default=64, metadata={"help": "width of the feature extractors phi_x and phi_z", "min": 1}
    )
    hidden: tuple[int, ...] = field(
        default=(64,), metadata={"help": "hidden widths of the prior, decoder and encoder MLPs", "min": 1}
    )
    activation: Activation = "relu"
    likelihood: Literal["bernoulli", "gaussian"] = field(
        default="bernoulli", metadata={"help": "bernoulli for binary steps (piano rolls), gaussian for real"}
    )
    min_scale: float = field(default=1e-3, metadata={"help": "floor on every standard deviation", "min": 0})


def _cell(cell: nn.GRUCell, inputs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    # GRUCell takes one batch dimension; particles and data are flattened into it and restored.
    lead = torch.broadcast_shapes(inputs.shape[:-1], h.shape[:-1])
    out = cell(
        inputs.expand(*lead, inputs.shape[-1]).reshape(-1, inputs.shape[-1]),
        h.expand(*lead, h.shape[-1]).reshape(-1, h.shape[-1]),
    )
    return out.reshape(*lead, h.shape[-1])


@register_model("vrnn", VRNNConfig)
class VRNN(LatentVariableModel):
    """A recurrent latent variable model: a GRU whose every step emits a latent and an observation.

    Generative story (steps t = 1..T, h_0 = 0, data as in :mod:`vaezoo.sequences`)::

        z_t ~ N(mu_0,t, diag sigma_0,t^2),       (mu_0,t, sigma_0,t) = phi_prior(h_{t-1})
        x_t ~ Bernoulli(logits = phi_dec(phi_z(z_t), h_{t-1}))            likelihood="bernoulli"
        x_t ~ N(mu_x,t, diag sigma_x,t^2),       (mu_x,t, sigma_x,t) = phi_dec(...)   "gaussian"
        h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1})

    so p(x_{<=T}, z_{<=T}) = prod_t p(x_t | z_{<=t}, x_{<t}) p(z_t | z_{<t}, x_{<t}). The latent
    sites are ``"z_1" .. "z_T"`` (one per step, in ``pyro.markov``); the emissions of all steps form
    the one observed site ``"x"`` of event shape ``(T, D)``. The guide ``"vrnn"``
    (:class:`~vaezoo.guides.vrnn.VRNNGuide`) is q(z_t | x_t, h_{t-1}), with h_{t-1} the state of this
    model's recurrence: it reads :attr:`phi_x`, :meth:`advance` and :meth:`prior_loc_scale` of the
    model, which owns them, as the paper shares them. The model replayed on the guide's draws takes
    the states the guide computed on those very tensors instead of running the GRU again (same
    values, same autograd graph; see :class:`~vaezoo.models.prior_handoff.PriorHandoff`).

    Variable lengths: the steps past a sequence's end (NaN in ``x``) are masked out of ``"x"``
    (``.mask`` per step). Their latents keep the prior: nothing observed depends on them, so they
    integrate out exactly and *any* guide still gives a valid bound and an unbiased importance
    weight of p(x_{<=L}); the VRNN guide proposes from that very prior there, so those steps add
    exactly zero to every bound. One sequence's log weight is the sum over its steps, because all
    sites sit in ``pyro.plate("data")`` and the objectives sum everything else per datapoint.

    Deviations: the paper's transition is an LSTM (we use a GRU cell, simpler and as common) and
    its feature extractors are deeper MLPs; the emission of every step is gathered into one site
    (the house contract names one observed site ``"x"``), which is the same joint density.

    References:
        - Chung, Kastner, Dinh, Goel, Courville & Bengio (2015), A Recurrent Latent Variable Model
          for Sequential Data, NIPS.
    """

    default_guide_name = "vrnn"

    def __init__(self, config: VRNNConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if len(c.x_shape) != 2:
            raise ConfigError(
                f"model 'vrnn' needs x_shape (steps, features), got {tuple(c.x_shape)}; sequence data "
                "are (N, steps, features) tensors (see vaezoo.sequences)"
            )
        self.steps, self.x_dim = c.x_shape
        self.z_dim = c.z_dim
        self.phi_x = mlp((self.x_dim, c.feature), c.activation, final_act=True)
        self.phi_z = mlp((c.z_dim, c.feature), c.activation, final_act=True)
        self.prior_net = mlp((c.h_dim, *c.hidden, 2 * c.z_dim), c.activation)
        out = self.x_dim * (1 if c.likelihood == "bernoulli" else 2)
        self.decoder = mlp((c.feature + c.h_dim, *c.hidden, out), c.activation)
        self.cell = nn.GRUCell(2 * c.feature, c.h_dim)
        self._handoff = PriorHandoff()

    @property
    def binary_data(self) -> bool:
        return self.config.likelihood == "bernoulli"

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """h_0 = 0, one row per sequence of ``x``."""
        return x.new_zeros(x.shape[0], self.config.h_dim)

    def prior_loc_scale(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_0,t, sigma_0,t) of p(z_t | h_{t-1}), shared with the guide."""
        return normal_head(self.prior_net(h), self.config.min_scale)

    def advance(
        self, x: torch.Tensor, t: int, z: torch.Tensor, x_feature: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi_z(z_t), h_t) from phi_x(x_t) (``x_feature``), z_t and h_{t-1}: the recurrence the guide
        runs with the model's networks.

        The result is also kept for the model's replay on the same tensors (``x`` the batch as given,
        ``z`` the guide's draw, ``h`` the state this very recurrence produced), so the recurrence runs
        once per step (:class:`~vaezoo.models.prior_handoff.PriorHandoff`).
        """
        z_feature = self.phi_z(z)
        h_next = _cell(self.cell, cat_features([x_feature, z_feature]), h)
        self._handoff.put(t, self._key(x, t, z, h), self, (z_feature, h_next))
        return z_feature, h_next

    @staticmethod
    def _key(x: torch.Tensor, t: int, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # h_0 is a fresh zero tensor in every run; later states are the same objects when handed off.
        return (x, z) if t == 0 else (x, z, h)

    def emission(self, z_feature: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The decoder's output for x_t from phi_z(z_t) and h_{t-1}: logits, or loc and raw scale."""
        return self.decoder(cat_features([z_feature, h]))

    def x_dist(self, out: torch.Tensor, mask: torch.Tensor) -> dist.Distribution:
        """p(x_{<=T} | ...) from the stacked emissions ``out`` of shape ``(..., T, width)``, masked past
        each end."""
        if self.binary_data:
            d = bernoulli(out, 1)
        else:
            d = dist.Normal(*normal_head(out, self.config.min_scale)).to_event(1)
        return d.mask(mask).to_event(1)

    def check_x(self, x: torch.Tensor, full: bool = False) -> None:
        """The base checks (shape, values), with NaN allowed only as trailing padding steps."""
        super().check_x(torch.nan_to_num(x, nan=0.0) if isinstance(x, torch.Tensor) else x, full)
        if full or pyro.poutine.util.is_validation_enabled():
            check_padding(x)

    @torch.no_grad()
    def generate(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` sequences of length T drawn ancestrally from p(x_{<=T}), shape ``(n, T, D)``.

        Each x_t is drawn and fed back into the recurrence, which running :meth:`forward` without
        its observation cannot do (its recurrence reads the x it is given).
        With ``mean=True`` the emission means of x_t are returned (the draws still drive the
        recurrence), as papers show samples.
        """
        h = self.initial_state(next(self.parameters()).new_zeros(n, 1))
        every_step = torch.ones(n, 1, dtype=torch.bool, device=h.device)
        shown = []
        for t in range(self.steps):
            z = dist.Normal(*self.prior_loc_scale(h)).sample()
            z_feature = self.phi_z(z)
            emission = self.x_dist(self.emission(z_feature, h).unsqueeze(-2), every_step)
            x_t = emission.sample()[:, 0]
            shown.append(emission.mean[:, 0] if mean else x_t)
            if t + 1 < self.steps:
                h = _cell(self.cell, cat_features([self.phi_x(x_t), z_feature]), h)
        return torch.stack(shown, dim=1)

    def forward(self, x: torch.Tensor) -> None:
        self.check_x(x)
        given = x
        mask = step_mask(x)
        x = torch.nan_to_num(x, nan=0.0)
        h = self.initial_state(x)
        outs = []
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(self.steps)):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(*self.prior_loc_scale(h)).to_event(1))
                handed = self._handoff.take(t, self._key(given, t, z, h), self)
                z_feature = self.phi_z(z) if handed is None else handed[0]
                outs.append(self.emission(z_feature, h))
                if t + 1 < self.steps:
                    if handed is None:
                        h = _cell(self.cell, cat_features([self.phi_x(x[:, t]), z_feature]), h)
                    else:
                        h = handed[1]
            out = torch.stack(torch.broadcast_tensors(*outs), dim=-2)
            pyro.sample("x", self.x_dist(out, mask), obs=x)


__all__ = ["VRNN", "VRNNConfig"]
