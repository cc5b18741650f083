"""Training the block-spin model by the reverse KL: minimize its free-energy bound itself, no data.

The bound of :func:`~vaezoo.inference.free_energy.free_energy_bound`,

    F_theta,phi / N = E_{(s, z) ~ p_theta}[E(s) + T ln p_theta(s, z) - T ln r_phi(z | s)] / N  >=  F / N,

equals F / N + T KL(q_theta(s) || p_Boltzmann) / N + T E_q KL(p_theta(z | s) || r_phi(z | s)) / N, so
minimizing it over (theta, phi) is reverse-KL training of the model's marginal q_theta (mode seeking,
where maximum likelihood on equilibrium lattices is the forward KL) together with the tightening of r.
The samples are discrete and drawn from p_theta, so theta needs the score function:

    grad_theta F = E_p[(f - b) grad_theta ln p_theta(s, z)]

(the term E_p[grad_theta f] = T E_p[grad_theta ln p_theta] vanishes in expectation and is left out),
with b the leave-one-out mean of f over the batch (a baseline that keeps the estimate unbiased); phi's
gradient is the pathwise -T E_p[grad_phi ln r_phi] of :func:`~vaezoo.inference.free_energy.fit_bound_guide`.
This is the variational autoregressive network's objective (Wu, Wang & Zhang 2019) with latents and r.

References:
    - Wu, Wang & Zhang (2019), Solving Statistical Mechanics Using Variational Autoregressive
      Networks, PRL 122, 080602.
    - Williams (1992), Simple statistical gradient-following algorithms for connectionist
      reinforcement learning, Machine Learning 8, 229 (the score-function gradient).
    - Kool, van Hoof & Welling (2019), Buy 4 REINFORCE samples, get a baseline for free!, ICLR
      workshop (the leave-one-out baseline).
"""

from __future__ import annotations

import torch
from pyro import poutine

from vaezoo.config import check_argument
from vaezoo.errors import ConfigError
from vaezoo.inference.fit import make_optimizer
from vaezoo.inference.free_energy import site_log_prob_sum
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.observables import energy
from vaezoo.ising.parameters import check_temperature
from vaezoo.models.lattice_hierarchy import LatticeHierarchy, model_trace


def reverse_kl_surrogate(
    model: LatticeHierarchy, guide, T: float, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A surrogate loss whose gradient estimates grad F_theta,phi / N, and the ``batch_size`` draws of f / N.

    The second tensor (detached) holds [E(s) + T ln p(s, z) - T ln r(z | s)] / N per draw: its mean is
    an unbiased estimate of the bound at this step's parameters.
    """
    T = check_temperature(T)
    batch_size = check_argument("batch_size", batch_size, int, min=2)  # the baseline leaves one out
    trace = model_trace(model, batch_size, T=T)
    spins = 2 * trace.nodes["x"]["value"] - 1
    log_p = site_log_prob_sum(trace, (*model.layer_sites, "x"))
    replayed = poutine.trace(poutine.replay(guide, trace=trace)).get_trace(lattice_input(spins, T=T))
    log_r = site_log_prob_sum(replayed, model.layer_sites)
    n_sites = model.L**2
    with torch.no_grad():
        f = (energy(spins).to(log_p.dtype) + T * (log_p - log_r)) / n_sites
        baseline = (f.sum() - f) / (batch_size - 1)
    surrogate = ((f - baseline) * log_p).mean() - T * log_r.mean() / n_sites
    return surrogate, f


def fit_free_energy(
    model: LatticeHierarchy,
    guide,
    temperatures,
    steps: int = 500,
    batch_size: int = 100,
    lr: float = 3e-4,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[float]:
    """Minimize the free-energy bound over the model and ``guide`` (r) by ``steps`` Adam steps.

    Step ``t`` trains at ``temperatures[t % len]``. Pass the ``optimizer`` of a previous call (built on
    both modules' parameters) to continue a run in chunks. Returns the mean f / N of each step's batch,
    a noisy running estimate of the bound (the parameters move during the run).
    """
    if not isinstance(model, LatticeHierarchy):  # the bound is the block-spin model's
        raise ConfigError(
            f"fit_free_energy needs a lattice model (a BlockSpin model or an IsingVLAE), "
            f"got {type(model).__name__}"
        )
    if not model.binary:
        # Real latents are drawn by rsample, so ln p(s, z) of a draw also depends on theta through z:
        # the score-function surrogate below would add those pathwise terms and be biased.
        raise ConfigError(
            f"fit_free_energy trains discrete block spins by the score function; {type(model).__name__} "
            "has real-valued latents, which this estimator does not handle: use a model with "
            "latent='binary'"
        )
    steps = check_argument("steps", steps, int, min=1)
    temps = [check_temperature(T) for T in temperatures]
    if not temps:
        raise ConfigError("give at least one temperature to train at")
    if optimizer is None:
        check_argument("lr", lr, float, above=0)
        params = [p for m in (model, guide) for p in m.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, lr)
    means = []
    for step in range(steps):
        loss, f = reverse_kl_surrogate(model, guide, temps[step % len(temps)], batch_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        means.append(f.mean().item())
    return means
