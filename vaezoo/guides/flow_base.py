"""What the amortized flow guides share: the Gaussian base given x, the sampling forward under the
particle plate, and sites that carry the joint log q computed while sampling.

A flow guide draws eps ~ N(0, I), z0 = mu(x) + sigma(x) * eps, pushes z0 through a flow conditioned
on x, and emits the flat result as the model's latent sites (in the order and layout of
:class:`~vaezoo.sites.LatentLayout`), the joint log q on the first site, as
:func:`~vaezoo.guides.flat_latents.sample_flat` does. Planar and Sylvester flows have no inverse, so
log q is known only at the guide's own draws; :class:`FlowSite` makes that the only place it is asked:

- at the drawn tensor itself (pathwise objectives): log q along the sampling path;
- at a detached copy of a draw (score-function gradients), or at values equal to the guide's last
  draw fed back by a replay (the second pass of DReG): the same value, plus a term with the right
  partial derivatives in z at fixed parameters (see :meth:`FlowDraw.grad_z`);
- anywhere else: a :class:`~vaezoo.errors.ConfigError`, never a wrong number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import ConfigError
from vaezoo.inference.traces import enclosing_particles
from vaezoo.models.base import check_shape
from vaezoo.nets import Activation, mlp
from vaezoo.sites import LatentLayout
from vaezoo.zoo_module import ZooModule

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class FlowEncoderConfig:
    """The encoder fields every flow guide's config repeats (dataclasses inherit them)."""

    hidden: tuple[int, ...] = field(
        default=(200, 200), metadata={"help": "encoder hidden widths, from x up", "min": 1}
    )
    activation: Activation = "tanh"
    min_scale: float = field(
        default=1e-4, metadata={"help": "floor on the base Gaussian's standard deviations", "min": 0}
    )


class FlowDraw:
    """One forward of a flow guide: noise, sample, log density, and how to recompute them.

    ``eps`` ``(k, batch, D)`` is the standard-normal noise (no gradient), ``z`` the sample (a
    function of the guide's parameters), ``log_q`` ``(k, batch)`` log q(z | x) along the path, and
    ``sites`` the model's site values split from ``z`` in the plate layout ``lead`` (see
    :meth:`~vaezoo.sites.LatentLayout.split`).
    """

    def __init__(self, guide: FlowGuide, x: torch.Tensor, eps: torch.Tensor, lead: int | None = None):
        self.guide, self.x, self.lead = guide, x, lead
        self.reset(eps)

    def reset(self, eps: torch.Tensor) -> None:
        """Recompute the draw from the noise ``eps`` with the guide's current parameters."""
        layout = self.guide.layout
        self.eps = eps
        self.z, self.log_q = self.guide.push(self.x, eps)
        values = layout.split(self.z, self.lead)
        self.sites = [values[n] for n in layout.names]
        self.detached = [v.detach() for v in self.sites]
        self.accepted: list[torch.Tensor] | None = None
        self._grad: list[torch.Tensor] | None = None

    def grad_z(self) -> list[torch.Tensor]:
        """d log q(z) / dz at the draw, the guide's parameters held fixed, per site (no gradient).

        With z = F(eps) the whole flow (base included) and L(eps) = log q(F(eps)), the chain rule gives
        dL/deps = J^T d log q/dz, J = dz/deps, so d log q/dz = J^{-T} dL/deps; both come from autograd
        on a recomputation of the draw, J one row per coordinate (D backward passes). Only scores at
        detached or replayed values need it (score-function gradients, DReG), never pathwise ones.
        """
        if self._grad is None:
            with torch.enable_grad():
                eps = self.eps.detach().requires_grad_(True)
                z, log_q = self.guide.push(self.x, eps)
                (d_l,) = torch.autograd.grad(log_q.sum(), eps, retain_graph=True)
                rows = [torch.autograd.grad(z_i.sum(), eps, retain_graph=True)[0] for z_i in z.unbind(-1)]
            jac = torch.stack(rows, -2)  # jac[..., i, j] = dz_i / deps_j; datapoints and particles do not mix
            grad = torch.linalg.solve(jac.transpose(-1, -2), d_l.unsqueeze(-1)).squeeze(-1)
            values = self.guide.layout.split(grad, self.lead)
            self._grad = [values[n] for n in self.guide.layout.names]
        return self._grad

    def is_own(self, returned: list[torch.Tensor]) -> bool:
        """Whether the values a run of the guide returned are this draw (pathwise or detached)."""
        return all(
            r is s or r is d for r, s, d in zip(returned, self.sites, self.detached, strict=True)
        )


class FlowSite(dist.TorchDistribution):
    """Site ``index`` of a :class:`FlowDraw`, as a distribution whose samples are the draw's values.

    ``log_prob`` puts the joint log q on the first site and 0 on the others (objectives use the sum
    over sites); see the module docstring for which values it scores.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, draw: FlowDraw, index: int, event_dim: int):
        self.draw, self.index = draw, index
        shape = draw.sites[index].shape
        cut = len(shape) - event_dim
        super().__init__(shape[:cut], shape[cut:], validate_args=False)

    @property
    def support(self):
        return dist.constraints.independent(dist.constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        if tuple(batch_shape) != tuple(self.batch_shape):
            raise ConfigError(
                f"a flow guide's site cannot be broadcast from batch shape {tuple(self.batch_shape)} to "
                f"{tuple(batch_shape)}: its latents need one vector per datapoint inside pyro.plate('data')"
            )
        return self

    def rsample(self, sample_shape=()):
        if tuple(sample_shape):
            raise ConfigError(
                "a flow guide's site holds one draw; run the guide under a particle plate for more"
            )
        return self.draw.sites[self.index]

    def sample(self, sample_shape=()):
        self.rsample(sample_shape)
        return self.draw.detached[self.index]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        draw, i = self.draw, self.index
        own = draw.sites[i]
        first = draw.log_q.reshape(self.batch_shape) if i == 0 else own.new_zeros(self.batch_shape)
        if value is own:
            return first
        accepted = draw.accepted is not None and value is draw.accepted[i]
        if not (accepted or value is draw.detached[i] or torch.equal(value, draw.detached[i])):
            raise ConfigError(
                f"{draw.guide.who} was asked for log q of a latent value it did not draw; its flow has no "
                "inverse, so it can score only its own samples. Score the guide's own draws, or use a "
                "guide with a closed-form density ('amortized') where other values must be scored"
            )
        # Equal in value to log q at the draw, with the partial derivatives in (value, parameters)
        # of log q_phi(z) at z = value: d/dphi [log q(F_phi(eps)) - <g, F_phi(eps)>] = d/dphi log q_phi(z).
        shift = draw.grad_z()[i] * (value - own)
        if self.event_shape:
            shift = shift.sum(tuple(range(-len(self.event_shape), 0)))
        return first + shift


class FlowGuide(ZooModule):
    """Base of the amortized flow guides: q(z | x) is N(mu(x), diag sigma(x)^2) pushed through a flow.

    One MLP encoder reads the flattened x; a linear head gives (mu, raw sigma) for the model's
    latent vector (all real latent sites concatenated, :class:`~vaezoo.sites.LatentLayout`) and
    ``cond_size`` more numbers: the per-datapoint conditioning of the flow (its parameters, or a
    context), given to :meth:`transform`. sigma = softplus(.) + min_scale.

    A subclass writes :meth:`cond_size` and :meth:`transform`.
    """

    def __init__(self, model, config):
        super().__init__()
        self.config = config
        self.who = f"guide {getattr(type(self), 'registry_name', type(self).__name__)!r}"
        self.layout = LatentLayout(model, self.who)
        self.dim = self.layout.dim
        self.x_shape = model.x_shape
        self.x_ndim = len(model.x_shape)
        self.encoder = mlp((model.x_numel, *config.hidden), config.activation, final_act=True)
        width = config.hidden[-1] if config.hidden else model.x_numel
        self.head = nn.Linear(width, 2 * self.dim + self.cond_size())
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (eps, z) of the last draw, detached

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, sigma, cond)`` of the batch ``x``, shapes ``(batch, D)``, ``(batch, D)``, ``(batch, C)``."""
        out = self.head(self.encoder(x.flatten(-self.x_ndim)))
        loc, raw, cond = out.split([self.dim, self.dim, out.shape[-1] - 2 * self.dim], -1)
        return loc, F.softplus(raw) + self.config.min_scale, cond

    def cond_size(self) -> int:
        """C, the numbers per datapoint the encoder gives the flow (``self.dim``, ``self.config`` are set)."""
        raise NotImplementedError

    def transform(self, z0: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The flow: ``(z, log |det dz/dz0|)`` of ``z0`` ``(..., D)``, ``cond`` ``(..., C)`` (broadcast)."""
        raise NotImplementedError

    def push(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log q(z | x))`` for standard-normal noise ``eps`` ``(k, batch, D)``."""
        loc, scale, cond = self.encode(x)
        z, log_det = self.transform(loc + scale * eps, cond)
        log_base = -(0.5 * eps.pow(2) + _HALF_LOG_2PI).sum(-1) - scale.log().sum(-1)
        return z, log_base - log_det

    def draw(self, x: torch.Tensor, k: int = 1, lead: int | None = None) -> FlowDraw:
        """``k`` fresh draws per datapoint of ``x``, their sites laid out for ``lead`` plate dims
        (default: ``(batch, *event)`` for one draw, ``(k, batch, *event)`` for more)."""
        check_shape(x, self.x_shape, type(self).__name__)
        eps = torch.randn(k, x.shape[0], self.dim, dtype=self.head.weight.dtype, device=x.device)
        return FlowDraw(self, x, eps, 2 if lead is None and k > 1 else lead)

    def forward(self, x: torch.Tensor) -> None:
        k, lead = enclosing_particles()
        draw = self.draw(x, k, lead)
        with pyro.plate("data", x.shape[0]):
            names, shapes = self.layout.names, self.layout.event_shapes
            returned = [pyro.sample(n, FlowSite(draw, i, len(shapes[i]))) for i, n in enumerate(names)]
        if draw.is_own(returned):
            self._last = (draw.eps, draw.z.detach())
        else:
            self._accept_replay(draw, returned, k, x.shape[0])

    def _accept_replay(self, draw: FlowDraw, returned: list[torch.Tensor], k: int, batch: int) -> None:
        """Values fed back to this guide (a replay) are accepted only if they are its last draw."""
        given = self.layout.join(dict(zip(self.layout.names, returned, strict=True)), k, batch).detach()
        last = self._last
        if last is None or last[1].shape != given.shape or not torch.equal(last[1], given):
            raise ConfigError(
                f"{self.who} was replayed on latent values it did not draw (poutine.replay or condition "
                "on another trace); its flow has no inverse, so it can score only its own draws. Run it "
                "without the replay, or use a guide with a closed-form density ('amortized') there"
            )
        draw.reset(last[0])
        if not torch.allclose(draw.z.detach(), given, rtol=1e-5, atol=1e-6):
            raise ConfigError(
                f"{self.who} was replayed on its last draw, but its parameters or x changed since, so the "
                "draw's log density is no longer known; replay it only within one step on the same batch"
            )
        draw.accepted = returned


__all__ = ["FlowDraw", "FlowEncoderConfig", "FlowGuide", "FlowSite"]
