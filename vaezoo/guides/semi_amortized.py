"""Semi-amortized inference: the encoder's output refined by gradient steps on each datapoint's ELBO."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.guides.flat_latents import Shifted
from vaezoo.inference.elbo import ELBO
from vaezoo.inference.traces import run_pair
from vaezoo.nets import frozen
from vaezoo.registry import build_guide, register_guide
from vaezoo.sites import LatentLayout, require_likelihood


@dataclass(frozen=True)
class SemiAmortizedConfig:
    base: str = field(default="amortized", metadata={"help": "registered Normal guide giving the initial q"})
    steps: int = field(
        default=10, metadata={"help": "gradient steps on each datapoint's (mu, log sigma)", "min": 0}
    )
    lr: float = field(default=1.0, metadata={"help": "step size of the refinement steps", "above": 0})
    backprop: bool = field(
        default=True, metadata={"help": "differentiate through the steps (SA-VAE); else Krishnan et al."}
    )
    max_grad_norm: float = field(
        default=5.0, metadata={"help": "clip each datapoint's step (0: off)", "min": 0}
    )
    inner_particles: int = field(
        default=1, metadata={"help": "samples per ELBO gradient in the steps", "min": 1}
    )


def build_base(model, name: str):
    """The wrapped guide ``name``, with the model's own default config when it is the default guide."""
    config = model.default_guide_config() if name == model.default_guide_name else None
    return build_guide(name, model, config)


@register_guide("semi_amortized", SemiAmortizedConfig)
class SemiAmortized(BoundGuide):
    """q(z | x) = N(z; lambda_K): the encoder's lambda_0 = (mu, log sigma)(x) after K gradient steps.

    For each datapoint, with the model fixed and one reparameterized sample per step::

        lambda_0 = encoder(x)
        lambda_{t+1} = lambda_t + lr * clip(grad_lambda ELBO(lambda_t; x))       t < K

    and the guide samples its sites from N(lambda_K). Objectives then see an ordinary guide: the
    model is trained on ELBO(lambda_K), a valid bound of the refined q.

    - ``backprop=True`` (SA-VAE, Kim et al. 2018): the encoder is trained through the K steps,
      d ELBO(lambda_K) / d phi, by differentiating the unrolled updates (Hessian-vector products by
      double backward, where Kim et al. use finite differences).
    - ``backprop=False`` (Krishnan et al. 2018): lambda_K is a constant for the encoder, which is
      trained on its own ELBO(lambda_0) instead. That term enters through the site's log density as
      ELBO(lambda_0) - stop_gradient(ELBO(lambda_0)), which is zero in value, so reported bounds are
      those of N(lambda_K) (see :class:`~vaezoo.guides.flat_latents.Shifted`).

    In both, the decoder gets only the direct gradient of ELBO(lambda_K): the steps run with the
    model's parameters frozen, as in Kim et al.'s implementation, in the model's current mode (the
    objective's own), its buffers (batch-norm running averages) left unchanged. The
    steps also run at evaluation (under ``torch.no_grad``, without a graph), so reported bounds and
    importance-sampled log p(x) use the refined q. With latent weight (warm-up, beta) w != 1 the
    steps still refine the unweighted ELBO, and under ``backprop=False`` the encoder's term is
    scaled by w.

    Deviations: plain gradient ascent with per-datapoint norm clipping (Kim et al. use momentum SGD
    with clipping); the base guide must expose ``site_dists(x)`` of Normal sites (as
    :class:`~vaezoo.guides.AmortizedNormal` does), and is built from the registry with its
    defaults unless passed as ``guide=``.

    References:
        - Kim, Wiseman, Miller, Sontag & Rush (2018), Semi-Amortized Variational Autoencoders, ICML.
        - Krishnan, Liang & Hoffman (2018), On the Challenges of Learning with Inference Networks on
          Sparse, High-dimensional Data, AISTATS.
        - Hjelm et al. (2016), Iterative Refinement of the Approximate Posterior for Directed Belief
          Networks, NIPS.
    """

    def __init__(self, model, config: SemiAmortizedConfig | dict | None = None, *, guide=None, **overrides):
        super().__init__(model)
        self.config = resolve(SemiAmortizedConfig, config, overrides)
        if self.config.steps < 0 or self.config.inner_particles < 1:
            raise ConfigError("semi_amortized needs steps >= 0 and inner_particles >= 1")
        require_likelihood(model, "guide 'semi_amortized'")
        self.layout = LatentLayout(model, "semi_amortized")
        self.base = guide if guide is not None else build_base(model, self.config.base)
        if not callable(getattr(self.base, "site_dists", None)):
            raise ConfigError(
                f"semi_amortized refines the means and scales of a Normal guide, but "
                f"{type(self.base).__name__} has no site_dists(x); use base 'amortized'"
            )

    def _initial(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dists = self.base.site_dists(x)
        locs, log_scales = [], []
        for name in self.layout.names:
            d = dists[name]
            base = d.base_dist if isinstance(d, dist.Independent) else d
            if not isinstance(base, dist.Normal):
                raise ConfigError(
                    f"semi_amortized needs Normal site distributions; site {name!r} is {type(base)}"
                )
            locs.append(base.loc.reshape(x.shape[0], -1))
            log_scales.append(base.scale.log().reshape(x.shape[0], -1))
        return torch.cat(locs, -1), torch.cat(log_scales, -1)

    def _normal_guide(self, loc: torch.Tensor, log_scale: torch.Tensor, shift: torch.Tensor | None = None):
        layout = self.layout

        def guide(x: torch.Tensor) -> None:
            pieces = zip(loc.split(layout.sizes, -1), log_scale.split(layout.sizes, -1), strict=True)
            with pyro.plate("data", x.shape[0]):
                for i, (name, shape, (m, s)) in enumerate(
                    zip(layout.names, layout.event_shapes, pieces, strict=True)
                ):
                    d = dist.Normal(m.reshape(-1, *shape), s.exp().reshape(-1, *shape)).to_event(len(shape))
                    pyro.sample(name, Shifted(d, shift) if shift is not None and i == 0 else d)

        return guide

    def _elbo(self, x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        guide = self._normal_guide(loc, log_scale)
        pair = run_pair(self.model, guide, x, self.config.inner_particles, nested=True)
        return ELBO().particle_terms(pair).mean(0)

    def refine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(loc_K, log_scale_K, elbo_0)``: refined parameters ``(batch, D)``, and for
        ``backprop=False`` with gradients enabled the ELBO at lambda_0 with its graph to the encoder."""
        cfg = self.config
        graph = torch.is_grad_enabled()
        through = graph and cfg.backprop
        loc0, log_scale0 = self._initial(x)
        elbo0 = None
        with torch.enable_grad(), frozen(self.model, keep=self):
            loc, log_scale = (loc0, log_scale0) if through else self._leaf(loc0, log_scale0)
            loc, log_scale = self._steps(x, loc, log_scale, through)
            if graph and not cfg.backprop:
                elbo0 = self._elbo(x, loc0, log_scale0)
        return (loc, log_scale, elbo0) if through else (loc.detach(), log_scale.detach(), elbo0)

    def _steps(self, x, loc, log_scale, through: bool) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        for _ in range(cfg.steps):
            elbo = self._elbo(x, loc, log_scale)
            g_loc, g_scale = torch.autograd.grad(elbo.sum(), (loc, log_scale), create_graph=through)
            if cfg.max_grad_norm > 0:
                norm = torch.cat([g_loc, g_scale], -1).norm(dim=-1, keepdim=True)
                factor = (cfg.max_grad_norm / norm.clamp(min=1e-12)).clamp(max=1.0)
                g_loc, g_scale = g_loc * factor, g_scale * factor
            loc, log_scale = loc + cfg.lr * g_loc, log_scale + cfg.lr * g_scale
            if not through:
                loc, log_scale = self._leaf(loc, log_scale)
        return loc, log_scale

    @staticmethod
    def _leaf(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.detach().requires_grad_() for t in tensors)

    def forward(self, x: torch.Tensor) -> None:
        loc, log_scale, elbo0 = self.refine(x)
        shift = None
        if not self.config.backprop and elbo0 is not None and torch.is_grad_enabled():
            # log q gains -(E0 - sg(E0)): zero in value, the encoder's own ELBO gradient in the objective.
            shift = elbo0.detach() - elbo0
        self._normal_guide(loc, log_scale, shift)(x)
