"""Gradient-estimator switches: pathwise (the default) and score-function (REINFORCE) with baselines."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.inference.baselines import make_baseline, vimco_signals
from vaezoo.inference.objective import Objective
from vaezoo.inference.traces import per_datapoint
from vaezoo.registry import OBJECTIVES, register_objective


class Reparam(Messenger):
    """Pathwise gradients, the default: guide sites draw with ``rsample`` where they have one.

    A no-op, so that ``with Reparam(): ...`` and ``with NonReparam(): ...`` read as the two
    settings of one switch; every objective is pathwise unless wrapped in :class:`ScoreFunction`.
    """


class NonReparam(Messenger):
    """Mark guide sites non-reparameterizable: draw them with ``fn.sample()`` (no pathwise gradient).

    Acts on every sample site that is about to be *drawn* (value unset, not observed), i.e. the
    guide's sites when the model is replayed on them, and records those sites in :attr:`sampled`
    for the score term. The distribution itself is left untouched (``has_rsample_(False)`` would
    mutate it in place, and fails on ``Independent``). Enter it outside
    :func:`~vaezoo.inference.traces.run_pair`, so the plates have shaped ``fn`` first.

    :param sites: ``"all"``, or ``"discrete"`` for only the sites that have no ``rsample`` (the
        others then stay pathwise).
    """

    def __init__(self, sites: Literal["all", "discrete"] = "all"):
        super().__init__()
        self.sites = sites
        self.sampled: list[dict] = []

    def __enter__(self):
        self.sampled = []
        return super().__enter__()

    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        if site_is_subsample(msg) or (self.sites == "discrete" and msg["fn"].has_rsample):
            return
        msg["value"] = msg["fn"].sample(*msg["args"], **msg["kwargs"])
        self.sampled.append(msg)


@dataclass(frozen=True)
class ScoreFunctionConfig:
    bound: str = field(
        default="elbo",
        metadata={"help": "the registered objective estimated, one with a score-function form (elbo, iwae)"},
    )
    num_particles: int = field(
        default=1,
        metadata={"help": "samples of z per datapoint (the ELBO's num_particles, the IWAE's k)", "min": 1},
    )
    beta: float = field(default=1.0, metadata={"help": "weight of the latent terms", "min": 0})
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "epochs over which the latent weight rises linearly from 0 to beta", "min": 0},
    )
    analytic_kl: bool = field(default=True, metadata={"help": "closed-form KL terms where valid (elbo)"})
    baseline: Literal["none", "avg", "nvil", "vimco"] = field(
        default="avg",
        metadata={"help": "control variate of the score term (vimco: multi-sample bounds, iwae)"},
    )
    baseline_decay: float = field(
        default=0.9, metadata={"help": "decay of the running-average baseline", "min": 0, "max": 1}
    )
    baseline_hidden: tuple[int, ...] = field(
        default=(100,), metadata={"help": "hidden widths of the NVIL baseline network", "min": 1}
    )
    score_sites: Literal["all", "discrete"] = field(
        default="all", metadata={"help": "guide sites given score-function gradients (others: pathwise)"}
    )


@register_objective("score_function", ScoreFunctionConfig)
class ScoreFunction(Objective):
    """The score-function (REINFORCE) gradient of an objective, with a baseline; no model edits.

    The wrapped objective L(x) = f(z_1..z_k) is computed under :class:`NonReparam`, so the z_j
    carry no gradient, and the returned per-datapoint value is

        L + S - stopgrad(S),   S = sum_j log q(z_j | x) * stopgrad(l_j - b_j)

    whose value is the bound and whose gradient is that of E_q[L] (the direct dependence of L on
    the parameters at fixed z, plus the score term). Needs no ``rsample``, so discrete latents work.

    - ``baseline="none"``: l_j = L(x), b = 0; ``"avg"``: b = running average of L
      (:class:`~vaezoo.inference.baselines.AverageBaseline`); ``"nvil"``: b = c + f_psi(x)
      (:class:`~vaezoo.inference.baselines.NVILBaseline`, whose network is trained by a term that
      adds its squared error's gradient and zero to the value).
    - ``baseline="vimco"`` (``bound="iwae"``): per-particle signals l_j - b_j = L - L_{-j}
      (:func:`~vaezoo.inference.baselines.vimco_signals`).

    Built as ``ScoreFunction(ELBO(), baseline="avg")``, ``ScoreFunction(IWAE(k=5),
    baseline="vimco")`` or from its config (``build_objective("score_function", ...)``); the wrapped
    objective is rebuilt from the config, so checkpoints can rebuild it. Any registered objective
    that implements :meth:`~vaezoo.inference.objective.Objective.score_function_fields` can be
    wrapped (``vimco`` also needs a :attr:`~vaezoo.inference.objective.Objective.multi_sample`
    bound). Its baseline state and parameters: :meth:`parameters`, :meth:`state_dict`.

    Deviation: with ``bound="elbo"`` and several particles each particle's score is multiplied by
    the datapoint's whole estimate (unbiased, not Rao-Blackwellized per particle).

    The score term assumes each guide site's log density is that of its samples; a guide whose
    log q is a construction for the gradient (``hmc_refined``) runs but gives no meaningful estimate.

    References:
        - Williams (1992), Simple Statistical Gradient-Following Algorithms for Connectionist
          Reinforcement Learning, Machine Learning 8.
        - Mnih & Gregor (2014), Neural Variational Inference and Learning in Belief Networks, ICML.
        - Mnih & Rezende (2016), Variational Inference for Monte Carlo Objectives, ICML.
        - Schulman, Heess, Weber & Abbeel (2015), Gradient Estimation Using Stochastic Computation
          Graphs, NIPS (the surrogate-loss construction).
    """

    def __init__(
        self, objective: Objective | ScoreFunctionConfig | dict | None = None, config: Any = None, **overrides
    ):
        if isinstance(objective, Objective):
            given = dataclasses.asdict(resolve(ScoreFunctionConfig, config)) if config is not None else {}
            name = getattr(type(objective), "registry_name", type(objective).__name__)
            config = {**given, "bound": name, **objective.score_function_fields()}
        elif config is not None:
            raise TypeError("pass an objective to wrap and/or a config, not two configs")
        else:
            config = objective
        super().__init__(config, **overrides)
        cfg = self.config
        if cfg.num_particles < 1:
            raise ConfigError(f"num_particles must be >= 1, got {cfg.num_particles}")
        wrapped = OBJECTIVES.get(cfg.bound).factory
        if cfg.baseline == "vimco" and (not wrapped.multi_sample or cfg.num_particles < 2):
            raise ConfigError(
                "baseline 'vimco' needs a multi-sample bound (e.g. bound='iwae') with num_particles >= 2, "
                f"got bound={cfg.bound!r}, num_particles={cfg.num_particles}"
            )
        self.objective = wrapped.from_score_function_fields(cfg)
        self.baseline = make_baseline(cfg.baseline, cfg.baseline_decay, cfg.baseline_hidden)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The estimator's own trainable parameters (the NVIL network); :func:`fit` trains them."""
        return self.baseline.parameters()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.baseline.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.baseline.load_state_dict(state)

    def to(self, device: torch.device | str) -> ScoreFunction:
        self.baseline.to(device)
        return self

    def shape_parameters(self, x: torch.Tensor) -> None:
        with torch.no_grad():  # the baseline's value only: no update of its running average
            self.baseline(x)

    def bound(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        return self.objective.bound(model, guide, x)

    def check_pair(self, model, guide, x) -> None:
        if not isinstance(x, torch.Tensor):
            # Baselines (the NVIL network above all) read x as one tensor.
            raise ConfigError(
                f"score_function's baselines read x as one tensor, not {type(x).__name__}; "
                "train this model with a reparameterized objective such as 'elbo'"
            )

    def per_datapoint(self, model, guide, x: torch.Tensor, latent_weight: float = 1.0) -> torch.Tensor:
        self.check_pair(model, guide, x)
        vimco = self.config.baseline == "vimco"
        sampling = NonReparam(self.config.score_sites)
        with sampling:
            if vimco:
                log_w = self.objective.log_weights(model, guide, x, latent_weight)
                value = log_w.logsumexp(0) - math.log(log_w.shape[0])
            else:
                value = self.objective.per_datapoint(model, guide, x, latent_weight)
        if not torch.is_grad_enabled():
            return value  # the value needs no surrogate, and evaluation must not move the baseline
        score = value.new_zeros(1, x.shape[0])
        for site in sampling.sampled:
            # Unscaled: the latent weight is already inside the signal that multiplies the score.
            log_q = scale_and_mask(site["fn"].log_prob(site["value"]), 1.0, site["mask"])
            score = score + per_datapoint(log_q, site)
        if vimco:
            surrogate = (score * vimco_signals(log_w)).sum(0)
            aux = torch.zeros_like(surrogate)
        else:
            surrogate = score.sum(0) * (value.detach() - self.baseline(x))
            aux = self.baseline.update(x, value)
        return value + (surrogate - surrogate.detach()) - (aux - aux.detach())
