"""Non-amortized guides: free variational parameters for each datapoint of one fixed batch.

These are the q* of Cremer, Li & Duvenaud (2018): the best member of a variational family for
each datapoint separately, found by optimizing that datapoint's parameters against a fixed model.
The gap between its bound and the amortized encoder's is the amortization gap (see
:func:`vaezoo.analysis.gap.amortization_gap`).

They follow the guide call signature (``guide(x)`` samples the model's latent sites, so every
objective and estimator accepts them) but hold parameters for the rows of one batch ``x``, in
order, as fitted by :meth:`fit_local`. That is why they are not in the guide registry: training
with :func:`~vaezoo.inference.fit` on shuffled minibatches would pair rows with the wrong datapoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from torch import nn

from vaezoo.config import resolve
from vaezoo.devices import module_device
from vaezoo.errors import ConfigError, DataError
from vaezoo.guides.bound import BoundGuide
from vaezoo.guides.factorized import FactorizedGuide
from vaezoo.guides.flat_latents import sample_flat
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.traces import enclosing_particles
from vaezoo.models.base import check_shape
from vaezoo.nets import evaluating, frozen
from vaezoo.sites import LatentLayout


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal tensors, NaN equal to NaN (sequence batches mark their padding with NaN)."""
    return (
        a.shape == b.shape
        and torch.equal(a.isnan(), b.isnan())
        and torch.equal(a.nan_to_num(), b.nan_to_num())
    )


@dataclass(frozen=True)
class LocalNormalConfig:
    n_data: int = field(
        default=1, metadata={"help": "number of datapoints (rows of x) with parameters", "min": 1}
    )


@dataclass(frozen=True)
class LocalFlowConfig:
    n_data: int = field(
        default=1, metadata={"help": "number of datapoints (rows of x) with parameters", "min": 1}
    )
    flows: int = field(
        default=2, metadata={"help": "coupling blocks, each transforming both halves once", "min": 0}
    )
    hidden: int = field(
        default=50, metadata={"help": "hidden units of each per-datapoint coupling network", "min": 1}
    )


class _Local(BoundGuide):
    config_class: type

    def __init__(self, model, config=None, **overrides):
        super().__init__(model)
        self.config = resolve(type(self).config_class, config, overrides)
        self.layout = LatentLayout(model, type(self).__name__)
        self.x_shape = model.x_shape
        self._fitted_on: torch.Tensor | None = None
        n, d = self.config.n_data, self.layout.dim
        # Built per batch while the model may already sit on a GPU: the parameters start beside it.
        device = module_device(model)
        self.loc = nn.Parameter(torch.zeros(n, d, device=device))
        self.log_scale = nn.Parameter(torch.zeros(n, d, device=device))

    def _check(self, x: torch.Tensor) -> None:
        check_shape(x, self.x_shape, type(self).__name__)
        fitted = self._fitted_on
        if x.shape[0] != self.config.n_data or (fitted is not None and not _same(fitted, x)):
            raise DataError(
                f"{type(self).__name__} holds parameters for one batch of {self.config.n_data} datapoints "
                f"(rows in order); it was called on a different batch of {x.shape[0]}. Build one per batch "
                "and call fit_local(x) on it"
            )

    @torch.no_grad()
    def init_from(self, guide, x: torch.Tensor) -> None:
        """Start the base Gaussian at another guide's Normal q(z | x) (e.g. the amortized encoder's)."""
        if not callable(getattr(guide, "site_dists", None)):
            raise ConfigError(
                f"init_from needs a guide with Normal site_dists(x), such as 'amortized'; "
                f"{type(guide).__name__} has none (its q is not a diagonal Gaussian). Skip init_from to "
                "start at N(0, I), or start from a mean-field guide"
            )
        dists = guide.site_dists(x)
        normals = [
            d.base_dist if isinstance(d, dist.Independent) else d for d in map(dists.get, self.layout.names)
        ]
        loc = [d.loc.reshape(x.shape[0], -1) for d in normals]
        scale = [d.scale.reshape(x.shape[0], -1) for d in normals]
        self.loc.copy_(torch.cat(loc, -1))
        self.log_scale.copy_(torch.cat(scale, -1).log())

    def fit_local(
        self,
        x: torch.Tensor,
        steps: int = 3000,
        lr: float = 1e-2,
        num_particles: int = 5,
        check_every: int = 50,
        patience: int = 2,
        lr_decays: int = 3,
        tol: float = 1e-3,
        eval_particles: int = 100,
    ) -> torch.Tensor:
        """Maximize the ELBO of every row of ``x`` over its own parameters, the model fixed; return it.

        Adam on the sum of the rows' ELBOs (Adam is elementwise, so each row's parameters follow
        exactly that row's gradient), ``num_particles`` reparameterized samples per step. Every
        ``check_every`` steps the mean ELBO of the window is compared with the best window so far;
        after ``patience`` windows without a gain of ``tol`` nats the learning rate is divided by 4,
        up to ``lr_decays`` times, after which (or after ``steps`` steps) the fit stops. The decays
        shrink the stochastic-gradient jitter around the optimum. Returns a fresh estimate of each
        row's ELBO with ``eval_particles`` samples, shape ``(n_data,)``; :attr:`history` holds the
        window means and :attr:`steps_run` the number of steps.
        """
        model = self.model
        self._fitted_on = None
        self._check(x)
        self._fitted_on = x
        objective = ELBO(num_particles=num_particles)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        self.history: list[float] = []
        best, stale, window, decays = -math.inf, 0, 0.0, lr_decays
        with evaluating(model), frozen(model):
            for step in range(1, steps + 1):
                elbo = objective.per_datapoint(model, self, x)
                optimizer.zero_grad(set_to_none=True)
                (-elbo.sum()).backward()
                optimizer.step()
                window += elbo.mean().item()
                self.steps_run = step
                if step % check_every:
                    continue
                self.history.append(window / check_every)
                stale = 0 if self.history[-1] > best + tol else stale + 1
                best, window = max(best, self.history[-1]), 0.0
                if stale >= patience:
                    if not decays:
                        break
                    decays, stale = decays - 1, 0
                    for group in optimizer.param_groups:
                        group["lr"] /= 4
            with torch.no_grad():
                return ELBO(num_particles=eval_particles).bound(model, self, x)


class LocalNormal(_Local, FactorizedGuide):
    """q(z | x_i) = N(z; mu_i, diag(sigma_i^2)) with free (mu_i, log sigma_i) for each datapoint i.

    The fully factorized Gaussian "FFG" family of Cremer et al. (2018) without amortization: fitted
    by :meth:`fit_local`, it gives L[q*_FFG], the best ELBO a mean-field encoder could reach on each
    datapoint. The latent sites of the model are concatenated into one vector per datapoint;
    each site is sampled as a Normal, so closed-form KL terms apply.

    References:
        - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML.
    """

    config_class = LocalNormalConfig

    def site_dists(self, x: torch.Tensor) -> dict[str, dist.Distribution]:
        self._check(x)
        out = {}
        pieces = zip(
            self.loc.split(self.layout.sizes, -1), self.log_scale.split(self.layout.sizes, -1), strict=True
        )
        for name, shape, (loc, log_scale) in zip(
            self.layout.names, self.layout.event_shapes, pieces, strict=True
        ):
            out[name] = dist.Normal(loc.reshape(-1, *shape), log_scale.exp().reshape(-1, *shape)).to_event(
                len(shape)
            )
        return out


class LocalFlow(_Local):
    """A per-datapoint normalizing flow: a diagonal Gaussian pushed through affine coupling layers.

    For datapoint i, with z split into halves (a, b) (a the first floor(D/2) coordinates)::

        z ~ N(mu_i, diag(sigma_i^2))
        repeat ``flows`` times:   b <- b * exp(s_i(a)) + t_i(a);   a <- a * exp(s'_i(b)) + t'_i(b)

    where each (s, t) is a one-hidden-layer tanh network with its own weights for each datapoint,
    log-scales bounded by 2 tanh(./2). log q(z) = log N(z_0) - sum of log-scales. This is the
    RealNVP-style flow (Dinh et al. 2017) of Cremer et al.'s q_Flow, whose transformations update
    one half of z given the other, with parameters local to each datapoint.

    Deviations from Cremer et al. (2018): no auxiliary variable, and the flow acts on all latent
    sites jointly (sampled as point masses carrying the joint log q on the first site, so no closed
    form KL applies). The last-layer weights start at zero, so the flow starts as the identity:
    :meth:`init_from` a fitted :class:`LocalNormal` makes L[q*_Flow] start at L[q*_FFG].

    References:
        - Dinh, Sohl-Dickstein & Bengio (2017), Density Estimation Using Real NVP, ICLR.
        - Cremer, Li & Duvenaud (2018), Inference Suboptimality in Variational Autoencoders, ICML.
    """

    config_class = LocalFlowConfig

    def __init__(self, model, config: LocalFlowConfig | dict | None = None, **overrides):
        super().__init__(model, config, **overrides)
        n, d, h = self.config.n_data, self.layout.dim, self.config.hidden
        at = {"device": self.loc.device}
        self.halves = (d // 2, d - d // 2)
        self.nets = nn.ParameterList()
        for _ in range(self.config.flows):
            for d_in, d_out in (self.halves, self.halves[::-1]):
                self.nets.extend(
                    [
                        nn.Parameter(torch.randn(n, d_in, h, **at) / math.sqrt(max(d_in, 1))),
                        nn.Parameter(torch.zeros(n, h, **at)),
                        nn.Parameter(torch.zeros(n, h, 2 * d_out, **at)),
                        nn.Parameter(torch.zeros(n, 2 * d_out, **at)),
                    ]
                )

    @staticmethod
    def _coupling(
        cond: torch.Tensor, moved: torch.Tensor, w1, b1, w2, b2
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.tanh(torch.einsum("...ni,nih->...nh", cond, w1) + b1)
        shift, raw = (torch.einsum("...nh,nho->...no", hidden, w2) + b2).chunk(2, -1)
        log_s = 2 * torch.tanh(raw / 2)
        return moved * log_s.exp() + shift, log_s.sum(-1)

    def transform(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The coupling layers applied to base draws ``z0`` ``(..., n, D)``: ``(z, log |det dz/dz0|)``."""
        a, b = z0.split(self.halves, -1)
        log_det = z0.new_zeros(z0.shape[:-1])
        nets = list(self.nets)  # one attribute access: each costs Pyro param statements for all of them
        for j in range(2 * self.config.flows):
            if j % 2 == 0:
                b, log_s = self._coupling(a, b, *nets[4 * j : 4 * j + 4])
            else:
                a, log_s = self._coupling(b, a, *nets[4 * j : 4 * j + 4])
            log_det = log_det + log_s
        return torch.cat([a, b], -1), log_det

    def sample_with_log_q(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` reparameterized draws per datapoint, ``(k, n, D)``, and their log q, ``(k, n)``."""
        base = dist.Normal(self.loc, self.log_scale.exp())
        z0 = base.rsample((k,))
        z, log_det = self.transform(z0)
        return z, base.log_prob(z0).sum(-1) - log_det

    def forward(self, x: torch.Tensor) -> None:
        self._check(x)
        k, _ = enclosing_particles()
        z, log_q = self.sample_with_log_q(k)
        sample_flat(self.layout, x, z, log_q)
