"""Exact answers at L = 4 for the block-spin model: KL(p_Boltzmann || q) and the free-energy bound,
by summing over every spin state (65,536) and every latent configuration.

:func:`exact_kl_l4` measures how far the model's marginal q(s) is from the Boltzmann distribution,
exactly; :func:`exact_bound` evaluates the bound of :func:`~vaezoo.inference.free_energy.free_energy_bound`
without sampling, which tests that estimator.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

from vaezoo.errors import ConfigError
from vaezoo.inference.free_energy import site_log_prob_sum
from vaezoo.inference.importance import log_likelihood
from vaezoo.ising.exact import MAX_ENUMERATION_L, brute_force_log_probs, enumerate_states
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.observables import energy
from vaezoo.ising.parameters import check_temperature
from vaezoo.models.lattice_hierarchy import LatticeHierarchy
from vaezoo.nets import evaluating

#: Largest number of joint latent configurations :func:`enumerate_latents` will build.
MAX_LATENT_CONFIGURATIONS = 2**12


def enumerate_latents(model: LatticeHierarchy) -> dict[str, torch.Tensor]:
    """Every joint configuration of a binary model's latents: site -> ``(Z, 1, m, m)`` occupations."""
    if not model.binary:
        raise ConfigError("latent enumeration needs latent='binary'; use importance sampling instead")
    sides = model.sides[1:]
    total = math.prod(2 ** (m * m) for m in sides)
    if total > MAX_LATENT_CONFIGURATIONS:
        raise ConfigError(
            f"{total} latent configurations are too many to enumerate (max {MAX_LATENT_CONFIGURATIONS})"
        )
    per_level = []
    for m in sides:
        idx = torch.arange(2 ** (m * m))
        per_level.append(((idx[:, None] >> torch.arange(m * m)) & 1).float().reshape(-1, m, m))
    combos = torch.tensor(list(itertools.product(*(range(len(s)) for s in per_level))))
    return {
        name: states[combos[:, i]].unsqueeze(1)
        for i, (name, states) in enumerate(zip(model.layer_sites, per_level, strict=True))
    }


@torch.no_grad()
def joint_log_probs(
    model: LatticeHierarchy, guide, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ln p_theta(s, z | K) and ln r(z | s, K) for every latent configuration z: two ``(Z, batch)`` tensors.

    ``guide=None`` skips r. Configurations ride on a particle plate left of the data plate.
    """
    z = enumerate_latents(model)
    n_z = next(iter(z.values())).shape[0]
    with evaluating(model), pyro.plate("particles", n_z, dim=-2):
        trace = poutine.trace(poutine.condition(model, data=z)).get_trace(x)
        log_p = site_log_prob_sum(trace, (*model.layer_sites, "x")).expand(n_z, x.shape[0])
        log_r = None
        if guide is not None:
            with evaluating(guide):
                g = poutine.trace(poutine.condition(guide, data=z)).get_trace(x)
            log_r = site_log_prob_sum(g, model.layer_sites).expand(n_z, x.shape[0])
    return log_p, log_r


@dataclass
class ExactKL:
    """Exact comparison at L = 4 and temperature T, per site (nats).

    :ivar kl: KL(p_Boltzmann || q_theta) / N.
    :ivar nll: the model's cross-entropy -E_p[ln q_theta(s)] / N (the test NLL over the exact
        distribution); ``nll = entropy + kl``.
    :ivar entropy: the exact entropy / N, the floor of ``nll``.
    :ivar stderr: Monte Carlo standard error of ``kl`` (0 for ``method="enumerate"``).
    :ivar method: ``"enumerate"`` (ln q exact, summed over all latents) or ``"is"`` (importance
        sampling with the guide, ``k`` particles; ln q is biased low, so ``kl`` is biased high).
    """

    T: float
    kl: float
    nll: float
    entropy: float
    stderr: float
    method: str
    k: int | None

    def __str__(self) -> str:
        how = "exact" if self.method == "enumerate" else f"importance sampling, k = {self.k}"
        return (
            f"T = {self.T:.4f}: KL(p || q)/N = {self.kl:.5f} ± {self.stderr:.5f} ({how}); "
            f"NLL/N = {self.nll:.5f}, exact entropy/N = {self.entropy:.5f}"
        )


def _small_lattice(model: LatticeHierarchy, who: str) -> int:
    if model.L > MAX_ENUMERATION_L:
        raise ConfigError(
            f"{who} enumerates all 2^(L^2) states, allowed for L <= {MAX_ENUMERATION_L}; this model has "
            f"L = {model.L}: use free_energy_bound instead"
        )
    return model.L


def _half_of_the_states(L: int) -> torch.Tensor:
    """The first half of :func:`enumerate_states` (last spin down): one state of each pair (s, -s)."""
    states = enumerate_states(L, torch.float32)
    return states[: len(states) // 2]


def exact_kl_l4(
    model: LatticeHierarchy,
    guide,
    T: float,
    k: int = 100,
    method: str = "is",
    batch_size: int = 2048,
) -> ExactKL:
    """KL(p || q_theta) per site over all 2^16 states of the 4 x 4 torus (any L <= 4) at temperature ``T``.

    :param method: ``"enumerate"`` sums ln q_theta(s) over every latent configuration (binary latents,
        exact); ``"is"`` estimates it by importance sampling with ``guide``, ``k`` particles per state.
    """
    T = check_temperature(T)
    L = _small_lattice(model, "exact_kl_l4")
    if method not in ("is", "enumerate"):
        raise ConfigError(f"method must be 'is' or 'enumerate', got {method!r}")
    x = lattice_input(_half_of_the_states(L), T=T)
    log_p = brute_force_log_probs(L, T)
    p = log_p.exp()
    if method == "enumerate":
        chunks = [
            joint_log_probs(model, None, x[i : i + batch_size])[0].logsumexp(0)
            for i in range(0, len(x), batch_size)
        ]
        log_q, mc = torch.cat(chunks).double(), torch.zeros(len(x), dtype=torch.float64)
    else:
        result = log_likelihood(model, guide, x, k=k, batch_size=batch_size)
        log_q, mc = result.per_datapoint.double(), result.mc_stderr.double()
    # q(-s) = q(s) exactly (the model is Z2-symmetric by construction), and state 2^N - 1 - i is -s_i.
    log_q, mc = torch.cat([log_q, log_q.flip(0)]), torch.cat([mc, mc.flip(0)])
    n_sites = L * L
    cross = -(p * log_q).sum().item()
    entropy = -(p * log_p).sum().item()
    return ExactKL(
        T=T,
        kl=(cross - entropy) / n_sites,
        nll=cross / n_sites,
        entropy=entropy / n_sites,
        stderr=((p * mc).pow(2).sum().sqrt() / n_sites).item(),
        method=method,
        k=k if method == "is" else None,
    )


@torch.no_grad()
def exact_bound(model: LatticeHierarchy, guide, T: float, batch_size: int = 2048) -> float:
    """The free-energy bound's exact expectation per site for L <= 4, a sum over every (s, z).

    For testing :func:`free_energy_bound`'s estimator; binary latents only. +inf when ``guide`` gives
    zero probability to latents the model can produce. Sums over half of the spin states: model and
    guides are Z2-symmetric by construction, so (s, z) and (-s, -z) contribute equally.
    """
    T = check_temperature(T)
    L = _small_lattice(model, "exact_bound")
    states = _half_of_the_states(L)
    total = 0.0
    for i in range(0, len(states), batch_size):
        s = states[i : i + batch_size]
        log_p, log_r = joint_log_probs(model, guide, lattice_input(s, T=T))
        w = log_p.double().exp()
        term = energy(s).double() + T * (log_p.double() - log_r.double())
        total += torch.where(w > 0, w * term, 0.0).sum().item()
    return 2 * total / (L * L)  # (s, z) and (-s, -z) contribute equally (p and r are Z2-symmetric)
