"""Neural MCMC of the 2D Ising model: independent Metropolis-Hastings with a model as the proposal, alone
or interleaved with Swendsen-Wang or heat-bath sweeps.

An independent proposal ``s' ~ q`` is accepted with ``min(1, w(s') / w(s))``, ``w = exp(-E/T) / q``;
this kernel leaves the Boltzmann distribution invariant for any ``q`` that covers it, so the chain is
exact however rough the model, which only sets the acceptance rate and autocorrelation. Between
proposals, ``sweeps`` local or cluster updates (:mod:`vaezoo.ising`) may follow: each of them leaves
the Boltzmann distribution invariant too, so their composition does. The model handles large moves
(a domain flipped, a new ordered state), the sweeps the local detail the model misses.

Exact with :class:`~vaezoo.analysis.proposals.ModelProposal` ``method="enumerate"`` (exact
``ln q``) and ``method="joint"`` (a chain on spins and latents whose target has the Boltzmann law as
its marginal; after each sweep the latents are redrawn from the guide, that target's conditional).
With ``method="is"`` the acceptance uses a noisy, low-biased ``ln q_hat`` and the chain's stationary
law is perturbed.

References:
    - Tierney (1994), Markov chains for exploring posterior distributions, Ann. Statist. 22, 1701
      (the independence sampler).
    - Nicoli et al. (2020), Asymptotically unbiased estimation of physical observables with neural
      samplers, Phys. Rev. E 101, 023304.
    - Swendsen & Wang (1987), Nonuniversal critical dynamics in Monte Carlo simulations, PRL 58, 86.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaezoo.analysis.neural_importance import log_weights
from vaezoo.analysis.proposals import check_proposal_lattices
from vaezoo.config import check_argument
from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.autocorrelation import integrated_autocorrelation_time
from vaezoo.ising.kernels import heat_bath_sweep
from vaezoo.ising.observables import abs_magnetization, energy
from vaezoo.ising.swendsen_wang import swendsen_wang_sweep

__all__ = ["NeuralMCMCResult", "neural_mcmc", "SWEEP_KERNELS"]

#: Sweeps that may follow each model proposal in :func:`neural_mcmc`.
SWEEP_KERNELS = {"swendsen_wang": swendsen_wang_sweep, "heat_bath": heat_bath_sweep}


@dataclass(frozen=True)
class NeuralMCMCResult:
    """A run of :func:`neural_mcmc`: the chains' states after every step and how well they mixed.

    :ivar lattices: ``(n_steps, n_chains, L, L)``, the state after each step (proposal, then sweeps).
    :ivar energy_per_site: ``E/N`` after each step, ``(n_steps, n_chains)``.
    :ivar abs_magnetization: ``|m|`` after each step, ``(n_steps, n_chains)``.
    :ivar acceptance: fraction of model proposals accepted.
    :ivar tau_energy: integrated autocorrelation time of ``E`` in steps (Sokal, 1/2 = independent).
    :ivar tau_abs_magnetization: the same for ``|m|``.
    :ivar kernel: the sweep interleaved with proposals, or ``None`` for pure independent MH.
    :ivar sweeps: sweeps per step.
    """

    lattices: torch.Tensor
    energy_per_site: torch.Tensor
    abs_magnetization: torch.Tensor
    acceptance: float
    tau_energy: float
    tau_abs_magnetization: float
    kernel: str | None
    sweeps: int

    @property
    def effective_samples(self) -> float:
        """``n / (2 tau_max)`` over all chains: how many independent draws the run is worth."""
        n = self.energy_per_site.numel()
        return n / (2 * max(self.tau_energy, self.tau_abs_magnetization))

    def __str__(self) -> str:
        how = "independent MH" if self.kernel is None else f"model + {self.sweeps} {self.kernel} sweep(s)"
        return (
            f"{how}: acceptance {self.acceptance:.3f}, tau_int(E) = {self.tau_energy:.2f}, "
            f"tau_int(|m|) = {self.tau_abs_magnetization:.2f} steps, "
            f"{self.effective_samples:.0f} effective samples"
        )


def neural_mcmc(
    proposal,
    start: torch.Tensor,
    n_steps: int,
    *,
    kernel: str | None = None,
    sweeps: int = 1,
    seed: int | None = None,
) -> NeuralMCMCResult:
    """Run ``n_chains`` chains of independent Metropolis-Hastings with ``proposal``, each step optionally
    followed by ``sweeps`` sweeps of ``kernel`` (``"swendsen_wang"`` or ``"heat_bath"``).

    :param proposal: a :class:`~vaezoo.analysis.proposals.ModelProposal` (or the exact
        :class:`~vaezoo.analysis.proposals.BoltzmannProposal`) at the target temperature.
    :param start: initial lattices ``(n_chains, L, L)`` of ±1 spins, ``L`` the proposal's side.
    :param n_steps: steps recorded (no burn-in is discarded: start from the proposal's draws, or drop
        the first steps yourself).
    :param seed: seeds proposals, acceptances and sweeps without touching the caller's global RNG.
    """
    n_steps = check_argument("n_steps", n_steps, int, min=2)
    sweeps = check_argument("sweeps", sweeps, int, min=1)
    if kernel is not None and kernel not in SWEEP_KERNELS:
        raise ConfigError(
            f"kernel must be None or one of {', '.join(map(repr, SWEEP_KERNELS))}, got {kernel!r}"
        )
    spins = check_proposal_lattices(start, proposal.L, "neural_mcmc (start)")
    n_chains, T = spins.shape[0], proposal.T
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        sweep = SWEEP_KERNELS.get(kernel)
        # Proposals do not depend on the chain's state, so all are drawn (and weighed) in one batch.
        drawn, drawn_log_q = proposal.sample(n_steps * n_chains)
        drawn = drawn.reshape(n_steps, n_chains, *spins.shape[1:])
        drawn_log_w = log_weights(drawn.reshape(-1, *spins.shape[1:]), drawn_log_q, T).reshape(
            n_steps, n_chains
        )
        log_w = log_weights(spins, proposal.log_prob(spins), T)
        if not torch.isfinite(log_w).all():
            bad = torch.nonzero(~torch.isfinite(log_w))[:5, 0].tolist()
            raise DataError(
                f"the proposal gives ln q = -inf (or NaN) to starting lattices {bad}: a chain cannot start "
                "where its proposal has no mass; start from the proposal's own draws"
            )
        uniforms = torch.rand(n_steps, n_chains, generator=generator, dtype=torch.float64)
        states, accepted = [], 0
        for t in range(n_steps):
            accept = uniforms[t].log() < drawn_log_w[t] - log_w
            accepted += int(accept.sum())
            spins = torch.where(accept[:, None, None], drawn[t], spins)
            log_w = torch.where(accept, drawn_log_w[t], log_w)
            if sweep is not None:
                for _ in range(sweeps):
                    spins = sweep(spins, T, generator=generator)
                log_w = log_weights(spins, proposal.log_prob(spins), T)
            states.append(spins)
    lattices = torch.stack(states)
    n_sites = spins.shape[-1] * spins.shape[-2]
    e, m = energy(lattices) / n_sites, abs_magnetization(lattices)
    return NeuralMCMCResult(
        lattices=lattices,
        energy_per_site=e,
        abs_magnetization=m,
        acceptance=accepted / (n_steps * n_chains),
        tau_energy=integrated_autocorrelation_time(e),
        tau_abs_magnetization=integrated_autocorrelation_time(m),
        kernel=kernel,
        sweeps=sweeps,
    )
