"""The importance-weighted bound (IWAE-k), per datapoint, with the optional DReG guide gradient."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from vaezoo.errors import ConfigError
from vaezoo.inference.objective import Objective, scaled_latents
from vaezoo.inference.traces import run_pair
from vaezoo.registry import register_objective


@dataclass(frozen=True)
class IWAEConfig:
    k: int = field(
        default=5, metadata={"help": "importance samples per datapoint (the k of IWAE-k)", "min": 1}
    )
    dreg: bool = field(
        default=False, metadata={"help": "doubly reparameterized guide gradient (Tucker et al. 2019)"}
    )
    beta: float = field(
        default=1.0, metadata={"help": "weight of the latent terms inside each log weight", "min": 0}
    )
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "epochs over which the latent weight rises linearly from 0 to beta", "min": 0},
    )


class ReplayValues(Messenger):
    """Give every sample site that is about to be drawn (a guide site) the value in ``values``.

    Unlike :func:`pyro.poutine.condition` the sites stay latent (not observed), so the traces read
    exactly as on a normal run; unlike :func:`pyro.poutine.replay` it needs no trace, only values.
    Enter it outside :func:`~vaezoo.inference.traces.run_pair`, so the model, which is replayed
    on the guide inside, is untouched.
    """

    def __init__(self, values: dict[str, torch.Tensor]):
        super().__init__()
        self.values = values

    def _process_message(self, msg: dict) -> None:
        if (
            msg["type"] == "sample"
            and msg["value"] is None
            and not msg["is_observed"]
            and not site_is_subsample(msg)
            and msg["name"] in self.values
        ):
            msg["value"] = self.values[msg["name"]]


@register_objective("iwae", IWAEConfig)
class IWAE(Objective):
    """L_k(x) = E[log (1/k) sum_j w_j],  w_j = p(x, z_j) / q(z_j | x),  z_1..z_k ~ q(z | x) iid.

    The log-sum-exp runs over the k particles of each datapoint separately (the ``(k, batch)``
    weights of :func:`~vaezoo.inference.traces.run_pair`). L_1 is the ELBO, L_k increases with k
    and tends to log p(x) (Burda et al. 2016). ``beta`` and ``kl_warmup`` scale the latent terms
    inside every log weight, log w = log p(x | z) + beta (log p(z) - log q(z | x)).

    **DReG** (``dreg=True``). With w~_j = w_j / sum_i w_i and z_j = z(eps_j, phi), the pathwise IWAE
    gradient sum_j w~_j (d log w_j / dz_j dz_j/dphi - d log q(z_j) / dlambda) has a score term
    whose variance grows with k. Tucker et al. replace it, by the reparameterization identity, to
    get the doubly reparameterized estimator sum_j w~_j^2 d log w_j / dz_j dz_j/dphi (for a general
    latent weight beta the coefficient is (1 - beta) w~_j + beta w~_j^2; beta = 1 gives theirs).
    It is implemented through the traces, in two passes:

    1. ``run_pair`` draws z_j pathwise (attached to phi);
    2. ``run_pair`` again under :class:`ReplayValues` at detached leaf copies of those z_j, giving
       log w_j as a function of the leaves; ``autograd.grad`` of sum_j c_j log w_j with respect to the
       leaves is the *partial* derivative d log w / dz: every parameter of q (and of p) held fixed,
       which is the stop-gradient on the variational parameters, but not on z.

    The surrogate is sum_j w~_j log p(x, z_j) (model gradient, as in IWAE) plus <g, z> with
    g = stopgrad(d/dz sum_j c_j log w_j) and z attached, so z carries the gradient back to phi.
    Taking the derivative at leaves, rather than re-evaluating q with detached distribution
    parameters, keeps the path of a hierarchical guide q(z2 | z1) through z1, needs no per-family
    code for flows whose parameters live in transforms, and stays correct when q's parameters are
    the model's (the exact-posterior guide). The value returned is the IWAE bound itself; DReG
    changes only the gradient reaching the guide's samples.

    The second pass assumes the guide's forward is a function of x and its sampled sites only. A
    :class:`ConfigError` is raised when it is not (the two passes disagree: refinement steps with
    their own random numbers, dropout), or when the samples are detached or have no ``rsample``
    (discrete sites; guides such as ``hmc_refined`` whose log q is a construction for the gradient).
    A guide with batch norm in training mode updates its running averages once per pass.

    References:
        - Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR.
        - Tucker, Lawson, Gu & Maddison (2019), Doubly Reparameterized Gradient Estimators for Monte
          Carlo Objectives, ICLR.
    """

    multi_sample = True

    def __init__(self, config: IWAEConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.k < 1:
            raise ConfigError(f"iwae needs k >= 1 importance samples, got k={self.config.k}")

    def score_function_fields(self) -> dict[str, Any]:
        c = self.config
        if c.dreg:
            raise ConfigError(
                "DReG is a pathwise estimator and cannot be combined with score-function gradients; "
                "wrap IWAE(dreg=False)"
            )
        return {"num_particles": c.k, "beta": c.beta, "kl_warmup": c.kl_warmup}

    @classmethod
    def from_score_function_fields(cls, fields: Any) -> IWAE:
        return cls(k=fields.num_particles, beta=fields.beta, kl_warmup=fields.kl_warmup)

    def log_weights(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        """log w_j per particle and datapoint, shape ``(k, batch)``, latent terms scaled."""
        with scaled_latents(latent_weight):
            return run_pair(model, guide, x, self.config.k).log_weight()

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        if self.config.dreg and torch.is_grad_enabled():
            return self._dreg(model, guide, x, latent_weight)
        return self.log_weights(model, guide, x, latent_weight).logsumexp(0) - math.log(self.config.k)

    def _dreg(self, model, guide, x: torch.Tensor, latent_weight: float) -> torch.Tensor:
        k = self.config.k
        with scaled_latents(latent_weight):
            drawn = run_pair(model, guide, x, k)
        _check_pathwise(drawn, guide)
        z = {name: drawn.guide_sites[name]["value"] for name in drawn.latent}
        leaves = {name: v.detach().requires_grad_(True) for name, v in z.items()}
        with scaled_latents(latent_weight), ReplayValues(leaves):
            at = run_pair(model, guide, x, k)
        drawn_log_w, log_w = drawn.log_weight().detach(), at.log_weight()
        if not torch.allclose(log_w.detach(), drawn_log_w, rtol=1e-5, atol=1e-5):
            raise ConfigError(
                f"dreg re-evaluates the guide's log density at its own samples, and {type(guide).__name__} "
                "gives a different value the second time (its forward draws random numbers besides its "
                "sample sites, e.g. refinement steps or dropout); use dreg=False with this guide"
            )
        w = torch.softmax(drawn_log_w, 0)
        coef = (1.0 - latent_weight) * w + latent_weight * w.pow(2)
        grads = torch.autograd.grad(
            (coef * log_w).sum(), list(leaves.values()), retain_graph=True, allow_unused=True
        )
        log_p = sum(at.log_p(name) for name in at.observed + at.latent)
        surrogate = (w * log_p).sum(0)
        for (name, value), g in zip(z.items(), grads, strict=True):
            if g is None:
                continue
            site = drawn.guide_sites[name]
            inner = g * value
            event_dims = len(site["fn"].event_shape)
            if event_dims:
                inner = inner.sum(tuple(range(-event_dims, 0)))
            surrogate = surrogate + drawn.per_datapoint(inner, site, name).sum(0)
        bound = drawn_log_w.logsumexp(0) - math.log(k)
        return bound + (surrogate - surrogate.detach())


def _check_pathwise(drawn, guide) -> None:
    """Raise :class:`ConfigError` unless every guide sample is a pathwise function of the guide."""
    trainable = any(p.requires_grad for p in guide.parameters())
    for name in drawn.latent:
        site = drawn.guide_sites[name]
        if not site["fn"].has_rsample:
            raise ConfigError(
                f"dreg needs reparameterizable guide sites, but site {name!r} ({type(site['fn']).__name__}) "
                "has no rsample; use dreg=False, e.g. ScoreFunction(IWAE(...), baseline='vimco')"
            )
        if trainable and not site["value"].requires_grad:
            raise ConfigError(
                f"dreg needs samples that carry the gradient to the guide, but {type(guide).__name__} "
                f"returns site {name!r} detached (its log density is a construction for the gradient, "
                "not the density of its samples); use dreg=False with this guide"
            )
