"""An encoder's samples refined by HMC on the true posterior: the decoder learns from MCMC samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vaezoo.config import resolve
from vaezoo.errors import ConfigError
from vaezoo.guides.bound import BoundGuide
from vaezoo.guides.flat_latents import sample_flat
from vaezoo.guides.semi_amortized import build_base
from vaezoo.inference.hmc import HMC
from vaezoo.inference.potential import joint_parts
from vaezoo.inference.traces import enclosing_particles, run_pair
from vaezoo.nets import evaluating, frozen
from vaezoo.registry import register_guide
from vaezoo.sites import LatentLayout, require_likelihood


@dataclass(frozen=True)
class HMCRefinedConfig:
    base: str = field(default="amortized", metadata={"help": "registered guide giving the initial z_0"})
    steps: int = field(
        default=5, metadata={"help": "HMC transitions T from z_0 (0: no refinement)", "min": 0}
    )
    leapfrog_steps: int = field(default=5, metadata={"help": "leapfrog steps per HMC transition", "min": 1})
    step_size: float = field(default=0.1, metadata={"help": "initial leapfrog step size", "above": 0})
    target_accept: float = field(
        default=0.65, metadata={"help": "acceptance rate the step size adapts to", "above": 0, "below": 1}
    )
    adapt: bool = field(default=True, metadata={"help": "adapt the step size while training"})
    refine_in_eval: bool = field(
        default=False, metadata={"help": "also run HMC in eval mode (no bound depends on it)"}
    )


@register_guide("hmc_refined", HMCRefinedConfig)
class HMCRefined(BoundGuide):
    """z_0 ~ q(z | x) from an encoder, then T HMC transitions targeting p(z | x) under the current model.

    Hoffman (2017), one step of training::

        z_0 ~ q_phi(z | x);   z_T = HMC^T(z_0) leaving p_theta(z | x) invariant (theta fixed, no gradient)
        phi   <- phi   + grad_phi   ELBO(phi; x)             the encoder learns from its own bound
        theta <- theta + grad_theta log p_theta(x, z_T)      the decoder learns from the refined samples

    How this meets the objective interface: the guide samples every latent site at z_T (point
    masses, so the model is replayed on the refined values) and gives them the joint log density

        log q(z_T) := stop_gradient(log p(x, z_T)) - E,    E = log p(x, z_0) - log q_phi(z_0)

    with E computed with the model's parameters frozen. An objective's importance weight
    log p(x, z_T) - log q(z_T) then equals E in value: the ELBO objective reports (and is a valid
    bound as) the encoder's ELBO, IWAE-k reports the encoder's IWAE-k bound, importance sampling
    uses the encoder as proposal; while its gradient is exactly Hoffman's: grad_phi E for the
    encoder and grad_theta log p(x, z_T) for the decoder. The density of z_T itself is intractable,
    so no bound of the refined distribution is claimed. Use it with latent weight 1 (no warm-up or
    beta): a weight w scales the latent part of that construction.

    The chains run on the model in eval mode (batch norm in training mode would couple them through
    batch statistics); log p(x, z_T) in log q(z_T) is then recomputed in the model's current mode,
    so that the identity above holds exactly for the objective.

    Chains: one per particle of the objective (the enclosing ``pyro.plate("particles")``), for each
    datapoint. The step size is one scalar, adapted toward ``target_accept`` in training mode and
    saved with the guide; :attr:`accept_rate` is the mean acceptance probability of the last call.
    In eval mode the HMC is skipped unless ``refine_in_eval`` (it changes no reported number).

    The constructor takes the model first (the registry's convention); pass an existing encoder as
    ``guide=``, otherwise the ``base`` guide is built from the registry with the model's defaults.

    References:
        - Hoffman (2017), Learning Deep Latent Gaussian Models with Markov Chain Monte Carlo, ICML.
        - Salimans, Kingma & Welling (2015), Markov Chain Monte Carlo and Variational Inference:
          Bridging the Gap, ICML.
    """

    def __init__(self, model, config: HMCRefinedConfig | dict | None = None, *, guide=None, **overrides):
        super().__init__(model)
        self.config = resolve(HMCRefinedConfig, config, overrides)
        cfg = self.config
        if cfg.steps < 0 or cfg.leapfrog_steps < 1 or cfg.step_size <= 0 or not 0 < cfg.target_accept < 1:
            raise ConfigError(
                "hmc_refined needs steps >= 0, leapfrog_steps >= 1, step_size > 0 and 0 < target_accept < 1"
            )
        require_likelihood(model, "guide 'hmc_refined'")
        self.layout = LatentLayout(model, "hmc_refined")
        self.base = guide if guide is not None else build_base(model, cfg.base)
        self.register_buffer("step_size", torch.tensor(cfg.step_size))
        self.accept_rate = float("nan")

    def _log_joint(self, x: torch.Tensor):
        model, layout = self.model, self.layout

        def log_prob(z: torch.Tensor) -> torch.Tensor:
            prior, lik = joint_parts(model, x, z, layout)
            return prior + lik

        return log_prob

    def forward(self, x: torch.Tensor) -> None:
        cfg, model = self.config, self.model
        k, _ = enclosing_particles()
        refine = cfg.steps > 0 and (self.training or cfg.refine_in_eval)
        with frozen(model, keep=self):
            pair = run_pair(model, self.base, x, k, nested=True)
            encoder_bound = pair.log_weight()  # (k, batch); its graph reaches the encoder only
            z = self.layout.join({n: pair.guide_sites[n]["value"] for n in self.layout.names}, k, x.shape[0])
            log_p = sum(pair.log_p(n) for n in pair.model_sites)
            if refine:
                adapt = cfg.adapt and self.training
                kernel = HMC(self.step_size.clone(), cfg.leapfrog_steps, cfg.target_accept, adapt=adapt)
                # The chains target the eval-mode posterior: in training mode, batch norm would couple
                # the chains through batch statistics and update running averages at every leapfrog step.
                with evaluating(model):
                    z = kernel.run(self._log_joint(x), z, cfg.steps).z
                if adapt:
                    self.step_size.copy_(kernel.step_size)
                self.accept_rate = kernel.accept_rate
                with torch.no_grad():  # log p(x, z_T) as the objective will compute it, in the current mode
                    log_p = self._log_joint(x)(z)
        sample_flat(self.layout, x, z.detach(), log_p.detach() - encoder_bound)
