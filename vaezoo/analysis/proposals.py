"""Proposals for neural importance sampling and neural MCMC of the 2D Ising model.

:class:`ModelProposal` is a block-spin model at a temperature: its draws, and ``ln q`` of any lattice
(exact by enumeration of the latents, or the ``"joint"`` weight on spins and latents that is exact for
any guide, or a biased importance-sampling estimate). :class:`BoltzmannProposal` is the exact
distribution at ``L <= 4``, the reference whose weights are all equal. Both have ``L``, ``T``,
``exact``, ``sample(n) -> (spins, ln q)`` and ``log_prob(spins)``, all that
:func:`~vaezoo.analysis.neural_importance.neural_importance_sampling` and
:func:`~vaezoo.analysis.neural_chains.neural_mcmc` use.

References:
    - Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders, ICLR (the estimate of
      ``ln q`` with the guide as proposal, and its bias).
    - Andrieu & Roberts (2009), The pseudo-marginal approach for efficient Monte Carlo
      computations, Ann. Statist. 37, 697 (why weights on an extended space of spins and latents
      keep estimates consistent and chains exact).
"""

from __future__ import annotations

import torch
from pyro import poutine

from vaezoo.config import check_argument
from vaezoo.errors import ConfigError, DataError
from vaezoo.inference.exact_kl import enumerate_latents, joint_log_probs
from vaezoo.inference.free_energy import site_log_prob_sum
from vaezoo.inference.importance import log_likelihood
from vaezoo.inference.traces import run_pair
from vaezoo.ising.exact import MAX_ENUMERATION_L, brute_force_log_probs, enumerate_states, state_index
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.observables import validate_lattices
from vaezoo.ising.parameters import check_temperature
from vaezoo.models.lattice_hierarchy import LatticeHierarchy, model_trace, sample_model
from vaezoo.nets import evaluating

__all__ = ["ModelProposal", "BoltzmannProposal", "check_proposal_lattices"]


def check_proposal_lattices(spins: torch.Tensor, L: int, who: str) -> torch.Tensor:
    """``spins`` as float ``(n, L, L)`` ±1 lattices of the proposal's side ``L``, else a DataError."""
    validate_lattices(spins)
    if spins.dim() != 3 or spins.shape[-2:] != (L, L):
        raise DataError(
            f"{who} works on lattices of shape (n, {L}, {L}) (the side its proposal was built for), got "
            f"{tuple(spins.shape)}; a model trained at another L cannot propose these lattices: train one at "
            f"L = {spins.shape[-1]}"
        )
    return spins.float()


class ModelProposal:
    """q(s) of a block-spin model at temperature ``T``: draws, and ``ln q`` of any lattice.

    Three ways to weigh a draw (``method``):

    * ``"enumerate"``: ``ln q(s)`` summed over every latent configuration (binary latents, at most
      4096 of them). Exact.
    * ``"joint"``: no marginal at all. The draw keeps its latents ``z ~ p(z | s)`` and the weight is
      ``exp(-E(s)/T) r(z | s) / p(s, z)`` with ``r = guide``: importance sampling of the extended
      target ``p_Boltzmann(s) r(z | s)``, whose marginal is the Boltzmann law, so every estimate is
      consistent and Metropolis-Hastings exact for any guide (the guide's quality only sets the ESS).
      ``ln (1/n) sum w`` is then the IWAE-style tightening of the free-energy bound of
      :func:`~vaezoo.inference.free_energy.free_energy_bound` (the same per-draw quantity, averaged
      in the exponent). :meth:`log_prob` of a given lattice draws ``z ~ r(z | s)`` for it, the
      extended target's exact conditional, which is what a chain needs after a sweep.
    * ``"is"``: ``ln q_hat(s)`` by importance sampling with the guide, ``k`` particles. Biased:
      ``E[ln q_hat] <= ln q`` (Jensen, by about ``se^2 / 2``), so weights ``exp(-E/T) / q_hat`` are
      biased high and unevenly so; estimates are consistent only as ``k -> infinity`` and
      Metropolis-Hastings on them is not exact. Kept for comparison.

    ``"auto"`` enumerates when it can, else uses ``"joint"`` (which needs a guide).
    """

    def __init__(
        self,
        model: LatticeHierarchy,
        T: float,
        guide=None,
        method: str = "auto",
        k: int = 100,
        batch_size: int = 2048,
    ):
        if not isinstance(model, LatticeHierarchy):
            raise ConfigError(
                f"ModelProposal needs a lattice model (a BlockSpin model or an IsingVLAE), "
                f"got {type(model).__name__}"
            )
        self.model, self.guide, self.T = model, guide, check_temperature(T)
        self.k = check_argument("k", k, int, min=1)
        self.batch_size = check_argument("batch_size", batch_size, int, min=1)
        if method == "auto":
            method = "enumerate" if self._enumerable() else "joint"
        if method not in ("enumerate", "joint", "is"):
            raise ConfigError(f"method must be 'auto', 'enumerate', 'joint' or 'is', got {method!r}")
        if method == "enumerate":
            enumerate_latents(model)  # raises a ConfigError naming why not
        elif guide is None:
            raise ConfigError(
                f"method {method!r} weighs draws with a guide r(z | s), and none was given (the latents "
                "cannot be enumerated: continuous, or too many): pass guide=..."
            )
        self.method = method

    def _enumerable(self) -> bool:
        try:
            enumerate_latents(self.model)
        except ConfigError:
            return False
        return True

    @property
    def L(self) -> int:
        return self.model.L

    @property
    def exact(self) -> bool:
        """Whether weights built on :meth:`log_prob` make estimates consistent and chains exact."""
        return self.method != "is"

    @torch.no_grad()
    def log_prob(self, spins: torch.Tensor) -> torch.Tensor:
        """``ln q(s)``, float64 ``(n,)``, of lattices ``(n, L, L)``: exact, or see ``method``."""
        spins = check_proposal_lattices(spins, self.L, "ModelProposal.log_prob")
        x = lattice_input(spins, T=self.T)
        if self.method == "is":
            k, size = self.k, self.batch_size
            return log_likelihood(self.model, self.guide, x, k=k, batch_size=size).per_datapoint.double()
        parts = []
        with evaluating(self.model, *([self.guide] if self.guide is not None else [])):
            for i in range(0, len(x), self.batch_size):
                chunk = x[i : i + self.batch_size]
                if self.method == "joint":
                    parts.append(run_pair(self.model, self.guide, chunk).log_weight()[0])
                else:
                    parts.append(joint_log_probs(self.model, None, chunk)[0].logsumexp(0))
        return torch.cat(parts).double()

    @torch.no_grad()
    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` lattices from the model (torch's global RNG) and their ``ln q`` (see ``method``)."""
        if self.method != "joint":
            spins = sample_model(self.model, n, T=self.T, batch_size=self.batch_size)
            return spins, self.log_prob(spins)
        spins, log_q = [], []
        with evaluating(self.model, self.guide):
            for i in range(0, n, self.batch_size):
                trace = model_trace(self.model, min(self.batch_size, n - i), T=self.T)
                s = 2 * trace.nodes["x"]["value"] - 1
                log_p = site_log_prob_sum(trace, (*self.model.layer_sites, "x"))
                guide = poutine.trace(poutine.replay(self.guide, trace=trace)).get_trace(
                    lattice_input(s, T=self.T)
                )
                spins.append(s)
                log_q.append(log_p - site_log_prob_sum(guide, self.model.layer_sites))
        return torch.cat(spins), torch.cat(log_q).double()


class BoltzmannProposal:
    """The exact Boltzmann distribution at ``L <= 4`` as a proposal: a reference whose weights are equal."""

    def __init__(self, L: int, T: float):
        if not isinstance(L, int) or not 2 <= L <= MAX_ENUMERATION_L:
            raise ConfigError(
                f"BoltzmannProposal enumerates all states: 2 <= L <= {MAX_ENUMERATION_L}, got {L!r}"
            )
        self.L, self.T, self.exact = L, check_temperature(T), True
        self.table = brute_force_log_probs(L, self.T)

    def log_prob(self, spins: torch.Tensor) -> torch.Tensor:
        spins = check_proposal_lattices(spins, self.L, "BoltzmannProposal.log_prob")
        return self.table[state_index(spins)]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.multinomial(self.table.exp(), n, replacement=True)
        return enumerate_states(self.L, torch.float32)[idx], self.table[idx]
