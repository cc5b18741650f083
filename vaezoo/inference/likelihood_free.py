"""Likelihood-free variational inference: a learned log-ratio r(x, z) stands in for log p(x, z) - log q.

A guide q(z | x) for a model that can only be *sampled* (a simulator, :mod:`vaezoo.models.implicit`)
learns in alternation with a classifier r(x, z) between the model's draws and the guide's, ratio
first as in Tran, Ranganath & Blei's Algorithm 1: :func:`~vaezoo.inference.fit.fit` calls
:meth:`LFVI.adversary_step` (r's updates, with r's own optimizer) before each gradient step of the
guide on :meth:`LFVI.differentiable_loss` (r fixed; no side effects). This is the inner-step hook
of every objective that trains its own network (:func:`~vaezoo.inference.objective.has_adversary`),
so ``fit`` checkpoints r through :meth:`LFVI.state_dict` and refuses ``compile`` and torchrun, as
for the discriminators of ``aae`` and ``vae_gan``.

References:
    - Tran, Ranganath & Blei (2017), Hierarchical Implicit Models and Likelihood-Free Variational
      Inference, NIPS (Algorithm 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from pyro import poutine
from torch import nn

from vaezoo.errors import CheckpointError, ConfigError
from vaezoo.inference.adversary import discriminator_loss
from vaezoo.inference.objective import Objective
from vaezoo.inference.traces import run_pair
from vaezoo.nets import Activation, mlp
from vaezoo.registry import register_objective
from vaezoo.zoo_module import param_statements_skipped


@dataclass(frozen=True)
class LFVIConfig:
    num_particles: int = field(
        default=1, metadata={"help": "samples of z per datapoint in the guide's term", "min": 1}
    )
    ratio_hidden: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "hidden widths of the ratio network r(x, z)", "min": 1}
    )
    ratio_activation: Activation = "tanh"
    ratio_lr: float = field(
        default=1e-3, metadata={"help": "Adam learning rate of the ratio network", "above": 0}
    )
    ratio_steps: int = field(
        default=1, metadata={"help": "classifier updates of the ratio network per guide step", "min": 1}
    )
    ratio_warmup: int = field(
        default=0,
        metadata={"help": "classifier updates before the first guide step (on the first batch)", "min": 0},
    )


def site_features(sites: dict[str, dict], names: list[str], k: int, batch: int) -> torch.Tensor:
    """The values of sites ``names`` flattened and concatenated, shape ``(k, batch, F)``.

    Values are ``(k, batch, *event)`` under a particle plate or ``(batch, *event)`` without one (an
    observed x is the latter in either case); both are broadcast to ``k`` particles.
    """
    parts = []
    for name in names:
        site = sites[name]
        value = site["value"]
        value = value.reshape(*value.shape[: value.dim() - site["fn"].event_dim], -1)
        parts.append(value.reshape(-1, batch, value.shape[-1]).expand(k, batch, value.shape[-1]))
    return torch.cat(parts, -1)


@register_objective("lfvi", LFVIConfig)
class LFVI(Objective):
    """Likelihood-free VI: the guide maximizes E_q[r(x, z)], with r a classifier's log-odds of p vs q.

    Tran, Ranganath & Blei (2017) subtract the empirical log q(x_n) (a constant) from the ELBO and
    write each datapoint's term as a log density ratio of two joints that can both be *sampled*::

        ELBO(x_n) - log q(x_n) = E_q(z | x_n)[ log p(x_n, z) - log q(x_n, z) ],   q(x, z) = q(x) q(z | x)

    with q(x) the data distribution. The ratio r(x, z) ~ log p(x, z) - log q(x, z) is an MLP on
    (x, z) flattened and concatenated, trained as a logistic classifier (their Eq. 5, the log loss
    ``E_p[softplus(-r)] + E_q[softplus(r)]``, minimized at the true log ratio). The model's density
    is never evaluated (:attr:`needs_likelihood` is False).

    **What happens when**, in :func:`~vaezoo.inference.fit.fit`, for each batch x:

    - :meth:`adversary_step` first: on its first call only, ``ratio_warmup`` classifier updates on
      that batch (how many were taken is part of :meth:`state_dict`, so a resumed run does not warm
      up again); then ``ratio_steps`` updates (:meth:`ratio_step`, the objective's own Adam at
      ``ratio_lr``), each on fresh model draws against fresh draws z ~ q(z | x_n). It returns
      ``{"ratio_loss": ...}``, the mean log loss before each of those updates (2 log 2 = 1.386 for
      a classifier at chance), which ``fit`` averages per epoch.
    - then :meth:`differentiable_loss`, ``-mean r(x_n, z)`` with reparameterized z and r's weights
      detached, so its gradient E[grad_z r * dz/dlambda] reaches the guide only. It, :meth:`loss`,
      :meth:`bound` and evaluation never change r (the network is built, untrained, at the first
      batch if no step has built it: its input size is x's plus the latents').

    :meth:`per_datapoint` is ``mean_j r(x, z_j)``: an estimate of ELBO(x) - log q(x), not a bound on
    log p(x); when the data are draws from the model (q(x) = p(x)) it estimates
    -KL(q(z | x) || p(z | x)). ``ratio``: a module of your own mapping features ``(..., F)`` to
    ``(..., 1)``, e.g. an exact log ratio for testing (with no parameters it is never updated).

    **Deviations from the paper**: the global variables beta are point values (model parameters,
    see :class:`~vaezoo.models.implicit.HierarchicalImplicitModel`), so r takes (x_n, z_n) only and
    there is no q(beta); the model's parameters receive no gradient (the paper's update of the
    simulator's parameters through the ratio is not implemented); the ``ratio_steps`` updates reuse
    the batch's x_n with fresh z and fresh model draws rather than new batches; the warm-up is ours
    (off by default). Training runs eagerly in one process (``fit`` refuses ``compile`` and
    torchrun, whose ranks would train diverging copies of r). The ratio network is not
    :class:`~vaezoo.inference.adversary.Adversary`'s discriminator: r's activation is configurable
    (tanh by default, a smooth grad_z r for the guide) and a module of your own may take its place.

    References:
        - Tran, Ranganath & Blei (2017), Hierarchical Implicit Models and Likelihood-Free Variational
          Inference, NIPS (Algorithm 1).
        - Mescheder, Nowozin & Geiger (2017), Adversarial Variational Bayes, ICML.
        - Sugiyama, Suzuki & Kanamori (2012), Density Ratio Estimation in Machine Learning, CUP
          (ratios by probabilistic classification).
    """

    needs_likelihood = False

    def __init__(self, config: LFVIConfig | dict | None = None, ratio: nn.Module | None = None, **overrides):
        super().__init__(config, **overrides)
        if any(w < 1 for w in self.config.ratio_hidden):
            raise ConfigError(f"ratio_hidden widths must be >= 1, got {self.config.ratio_hidden}")
        self.ratio = ratio
        self._optimizer: torch.optim.Optimizer | None = None
        self._names: list[str] | None = None  # the sites whose values are r's input, in order
        self._warmed = 0  # warm-up updates taken by adversary_step
        self._updates = 0  # classifier updates taken in all

    # -- the ratio network ---------------------------------------------------------------------

    def ratio_network(self, features: torch.Tensor | None = None, width: int | None = None) -> nn.Module:
        """r, built on first use for inputs like ``features`` (or of ``width``) if not given."""
        if self.ratio is None:
            if features is None and width is None:
                raise ConfigError("the ratio network is built at the first batch; run a step first")
            c = self.config
            width = features.shape[-1] if width is None else width
            self.ratio = mlp((width, *c.ratio_hidden, 1), c.ratio_activation)
            if features is not None:
                self.ratio.to(device=features.device, dtype=features.dtype)
        return self.ratio

    def ratio_parameters(self) -> list[nn.Parameter]:
        """The ratio network's trainable parameters (not in :func:`fit`'s optimizer: they have their own)."""
        return [] if self.ratio is None else [p for p in self.ratio.parameters() if p.requires_grad]

    def ratio_optimizer(self) -> torch.optim.Optimizer:
        """The ratio network's Adam (``ratio_lr``), made on first use."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.ratio_parameters(), lr=self.config.ratio_lr)
        return self._optimizer

    def log_ratio(self, features: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """r at ``features`` ``(..., F)``, shape ``(...)``; ``frozen``: no gradient to r's weights."""
        net = self.ratio_network(features)
        if frozen:
            weights = {n: p.detach() for n, p in net.named_parameters()}
            return torch.func.functional_call(net, weights, (features,)).squeeze(-1)
        return net(features).squeeze(-1)

    def ratio_loss(self, p_features: torch.Tensor, q_features: torch.Tensor) -> torch.Tensor:
        """The classifier's log loss E_p[-log sigmoid(r)] + E_q[-log(1 - sigmoid(r))], minimized by
        r = log p - log q; the two samples are weighted equally whatever their sizes."""
        return discriminator_loss(self.log_ratio(p_features), self.log_ratio(q_features))

    def model_features(self, model, x: torch.Tensor) -> torch.Tensor:
        """(x, z) ~ p drawn by running ``model`` unconditioned for ``len(x)`` rows, shape ``(len(x), F)``."""
        if self._names is None:
            raise ConfigError("the ratio network's inputs are known after the first batch; run a step first")
        with torch.no_grad(), param_statements_skipped(), poutine.block():
            trace = poutine.trace(poutine.uncondition(model)).get_trace(x)
        return site_features(trace.nodes, self._names, 1, x.shape[0])[0]

    def guide_features(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """(x_n, z) with z ~ q(z | x_n), ``num_particles`` per row, shape ``(k, len(x), F)``, detached."""
        with torch.no_grad():
            pair = self._pair(model, guide, x)
            return site_features(pair.model_sites, self._names, pair.num_particles, x.shape[0])

    def ratio_step(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        """One classifier update of r on fresh guide draws on ``x`` against as many fresh model draws;
        returns the log loss before the update, detached."""
        q_features = self.guide_features(model, guide, x)
        p_features = self.model_features(model, x)
        q_features = q_features.reshape(-1, q_features.shape[-1])
        self.ratio_network(q_features)
        params = self.ratio_parameters()
        if not params:
            raise ConfigError("the ratio network has no trainable parameters to update")
        optimizer = self.ratio_optimizer()
        with torch.enable_grad():
            loss = self.ratio_loss(p_features, q_features)
            grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self._updates += 1
        return loss.detach()

    def adversary_step(self, model, guide, x: torch.Tensor, progress: float = math.inf) -> dict[str, float]:
        """The warm-up still owed (``ratio_warmup`` updates, on the first call), then ``ratio_steps``
        updates of r on the batch ``x``; ``{"ratio_loss": mean log loss before those updates}``, or
        nothing for a ratio of your own without trainable parameters."""
        if self.ratio is not None and not self.ratio_parameters():
            return {}
        while self._warmed < self.config.ratio_warmup:
            self.ratio_step(model, guide, x)
            self._warmed += 1
        losses = [self.ratio_step(model, guide, x).item() for _ in range(self.config.ratio_steps)]
        return {"ratio_loss": sum(losses) / len(losses)}

    # -- the objective -------------------------------------------------------------------------

    def _pair(self, model, guide, x: torch.Tensor):
        if getattr(model, "max_plate_nesting", 1) != 1:
            raise ConfigError(
                f"lfvi reads one (x, z) vector per datapoint, but {type(model).__name__} nests "
                f"{model.max_plate_nesting} plates; use a model whose sites sit in pyro.plate('data') only"
            )
        pair = run_pair(model, guide, x, self.config.num_particles)
        flat = [n for n in pair.latent if not pair.guide_sites[n]["fn"].has_rsample]
        if flat:
            raise ConfigError(
                f"lfvi's guide gradient flows through reparameterized samples, but guide sites {flat} "
                "have no rsample (discrete?); use a reparameterizable guide"
            )
        values = [pair.guide_sites[n]["value"] for n in pair.latent]
        if torch.is_grad_enabled() and not any(v.requires_grad for v in values):
            if any(p.requires_grad for p in guide.parameters()):
                raise ConfigError(
                    f"lfvi trains the guide through its samples, but {type(guide).__name__}'s samples carry "
                    "no gradient (drawn by MCMC or detached); use a reparameterized guide such as "
                    "'affine_normal' or 'amortized'"
                )
        names = pair.observed + pair.latent
        if self._names is not None and names != self._names:
            raise ConfigError(
                f"this lfvi objective's ratio network reads sites {self._names}, not {names}; "
                "build a new objective for another model"
            )
        self._names = names
        return pair

    def check_pair(self, model, guide, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise ConfigError(f"lfvi feeds x to its ratio network as one tensor, not {type(x).__name__}")
        if not torch.isfinite(x).all():
            raise ConfigError("lfvi feeds x to its ratio network, which cannot read NaN (padded) values")
        saved = self._names
        try:
            with torch.enable_grad():  # to see whether the guide's samples carry a gradient
                self._pair(model, guide, x)
        finally:
            self._names = saved

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        """mean_j r(x, z_j), z_j ~ q(z | x): ELBO(x) - log q(x) up to r's error, differentiable in the
        guide's parameters only. ``latent_weight`` is ignored: r does not split into a latent and an
        observed term. :meth:`differentiable_loss` is minus its batch mean."""
        pair = self._pair(model, guide, x)
        features = site_features(pair.model_sites, self._names, pair.num_particles, x.shape[0])
        return self.log_ratio(features, frozen=True).mean(0)

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat: the update counts (``warmup_done``, ``updates``), the ratio network (``ratio.*``) and
        its Adam moments (``optimizer.<i>.<key>``) once they exist."""
        state = {"warmup_done": torch.tensor(self._warmed), "updates": torch.tensor(self._updates)}
        if self.ratio is not None:
            state.update({f"ratio.{k}": v for k, v in self.ratio.state_dict().items()})
        if self._optimizer is not None:
            for i, entry in self._optimizer.state_dict()["state"].items():
                state.update({f"optimizer.{i}.{k}": v for k, v in entry.items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`'s output; a missing part is a :class:`CheckpointError` with the fix."""
        net = {k[len("ratio."):]: v for k, v in state.items() if k.startswith("ratio.")}
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in state.items():
            if k.startswith("optimizer."):
                _, i, key = k.split(".", 2)
                moments.setdefault(int(i), {})[key] = v.clone()  # Adam would share, then update, them
        trained = int(state.get("updates", 0)) > 0
        missing = [what for what, gone in (
            ("its update counts (warmup_done, updates)", not {"warmup_done", "updates"} <= state.keys()),
            ("the ratio network's weights", trained and not net),
            ("the ratio network's optimizer state", trained and not moments),
        ) if gone]
        if missing:
            raise CheckpointError(
                f"the checkpoint's lfvi state lacks {' and '.join(missing)} (parts found: "
                f"{sorted({k.split('.')[0] for k in state})}), so its ratio network cannot resume exactly; "
                "start over with --no-resume (Python: resume=False) or another --out"
            )
        self._warmed, self._updates = int(state["warmup_done"]), int(state["updates"])
        if not net:
            return
        try:
            if self.ratio is None:
                self.ratio_network(width=net["0.weight"].shape[1]).to(net["0.weight"].device)
            self.ratio.load_state_dict(net)
        except (RuntimeError, KeyError) as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise CheckpointError(
                f"the checkpoint's lfvi ratio network does not fit this configuration ({first}); use the "
                "ratio_hidden it was trained with, or start over with --no-resume"
            ) from None
        if moments:
            optimizer = self.ratio_optimizer()
            saved = optimizer.state_dict()
            saved["state"] = moments
            optimizer.load_state_dict(saved)

    def to(self, device: torch.device | str) -> LFVI:
        if self.ratio is not None:
            self.ratio.to(device)
        if self._optimizer is not None:
            for entry in self._optimizer.state.values():
                for k, v in entry.items():
                    if k != "step" and isinstance(v, torch.Tensor):
                        entry[k] = v.to(device)
        return self
