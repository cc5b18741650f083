"""How close is the block-spin model to the Boltzmann distribution? Free-energy bounds and exact KL.

**Variational free-energy bound.** For any distribution q(s) on spins, Gibbs-Bogoliubov gives
``F = -T ln Z <= E_q[E(s)] + T E_q[ln q(s)]`` (the gap is ``T KL(q || p_Boltzmann)``). The model's marginal
q(s) = sum_z p_theta(s, z) is intractable, but for any r(z | s) (a guide)

    E_q[ln q(s)] <= E_{p_theta(s, z)}[ln p_theta(s, z) - ln r(z | s)]

(the gap is ``E_q KL(p_theta(z | s) || r(z | s)) >= 0``), hence the rigorous, sampleable bound

    F <= E_{(s, z) ~ p_theta}[E(s) + T ln(p_theta(z) p_theta(s | z) / r(z | s))].

:func:`free_energy_bound` estimates it per site from model samples with its standard error and compares
it with Kaufman's exact ``F = -T ln Z`` of the finite torus; :func:`mean_field_free_energy` is naive
mean-field theory's bound (q a product of identical spins) for comparison. :func:`fit_bound_guide`
trains r to tighten the bound (minimizing the second gap, with the model fixed: wake-sleep's sleep
phase). **Exact at L = 4**: :func:`exact_kl_l4` sums over all 65,536 states, and :func:`exact_bound`
over every (s, z), which tests the bound's estimator.

References:
    - Bogoliubov (1958); Feynman (1972), Statistical Mechanics, ch. 2 (the Gibbs-Bogoliubov inequality).
    - Wu, Wang & Zhang (2019), Solving Statistical Mechanics Using Variational Autoregressive
      Networks, PRL 122, 080602 (the variational free energy of a sampleable model).
    - Hinton, Dayan, Frey & Neal (1995), The wake-sleep algorithm, Science 268, 1158.
    - Kaufman (1949), Crystal statistics II, Phys. Rev. 76, 1232.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from scipy.optimize import brentq

from vaezoo.config import check_argument
from vaezoo.errors import ConfigError
from vaezoo.inference.fit import make_optimizer
from vaezoo.inference.importance import log_likelihood
from vaezoo.ising.exact import MAX_ENUMERATION_L, brute_force_log_probs, enumerate_states, kaufman_log_z
from vaezoo.ising.lattice_data import lattice_input
from vaezoo.ising.observables import energy
from vaezoo.ising.parameters import check_temperature
from vaezoo.models.block_spin import BlockSpin, model_trace
from vaezoo.nets import evaluating

#: Largest number of joint latent configurations :func:`enumerate_latents` will build.
MAX_LATENT_CONFIGURATIONS = 2**12


def mean_field_free_energy(T: float, J: float = 1.0) -> float:
    """Naive mean-field bound on F / N: min_m [-2 J m^2 - T S(m)], S the entropy of a spin with mean m.

    A product of identical spins with mean m has E/N = -2 J m^2 on the square-lattice torus (2N bonds),
    so by Gibbs-Bogoliubov this upper-bounds the exact F / N at every L >= 2. The minimizer solves
    m = tanh(4 K m); its nonzero root exists for T < 4 J.
    """
    T = check_temperature(T)
    K = J / T
    m = 0.0
    if 4 * K > 1:
        m = brentq(lambda u: math.atanh(u) - 4 * K * u, 1e-12, 1 - 1e-16, xtol=1e-15)
    p, q = (1 + m) / 2, (1 - m) / 2
    entropy = -sum(v * math.log(v) for v in (p, q) if v > 0)
    return -2 * J * m * m - T * entropy


def exact_free_energy(L: int, T: float) -> float:
    """Exact F / N = -T ln Z / N on the L x L torus (Kaufman), J = 1."""
    return -T * kaufman_log_z(L, check_temperature(T)) / (L * L)


def _site_sum(trace, names) -> torch.Tensor:
    total = 0.0
    for name in names:
        site = trace.nodes[name]
        total = total + site["fn"].log_prob(site["value"])
    return total


@torch.no_grad()
def bound_samples(model: BlockSpin, guide, T: float, n: int, batch_size: int = 500) -> torch.Tensor:
    """``n`` draws of [E(s) + T (ln p(s, z) - ln r(z | s))] / N with (s, z) ~ p_theta(. | K = 1/T)."""
    T = check_temperature(T)
    out = []
    with evaluating(model, guide):
        for start in range(0, n, batch_size):
            trace = model_trace(model, min(batch_size, n - start), T=T)
            spins = 2 * trace.nodes["x"]["value"] - 1
            log_p = _site_sum(trace, (*model.layer_sites, "x"))
            replayed = poutine.trace(poutine.replay(guide, trace=trace)).get_trace(lattice_input(spins, T=T))
            log_r = _site_sum(replayed, model.layer_sites)
            out.append((energy(spins).to(log_p.dtype) + T * (log_p - log_r)) / model.L**2)
    return torch.cat(out)


@dataclass
class FreeEnergyBound:
    """Per-site free energies at temperature T on the L x L torus.

    :ivar value: the model's upper bound (Monte Carlo mean), ``stderr`` its standard error.
    :ivar exact: Kaufman's exact F / N.
    :ivar mean_field: naive mean-field's bound.
    """

    T: float
    L: int
    n: int
    value: float
    stderr: float
    exact: float
    mean_field: float

    @property
    def relative_error(self) -> float:
        """(bound - exact) / |exact|, >= 0 up to Monte Carlo error."""
        return (self.value - self.exact) / abs(self.exact)

    @property
    def mean_field_relative_error(self) -> float:
        return (self.mean_field - self.exact) / abs(self.exact)

    def __str__(self) -> str:
        return (
            f"T = {self.T:.4f}, L = {self.L}: F/N <= {self.value:.5f} ± {self.stderr:.5f} (model bound, "
            f"n = {self.n}); exact {self.exact:.5f} (Kaufman); "
            f"relative error {100 * self.relative_error:.3f}%; "
            f"naive mean field {self.mean_field:.5f} ({100 * self.mean_field_relative_error:.3f}%)"
        )


def free_energy_bound(
    model: BlockSpin, guide, T: float, n: int = 2000, batch_size: int = 500
) -> FreeEnergyBound:
    """The variational upper bound on F / N at temperature ``T`` from ``n`` model samples, and the exact F.

    ``guide`` is r(z | s). The RG guide gives +inf (its support misses most of the model's latents);
    pass a :class:`~vaezoo.guides.block_spin.BlockAmortized` fitted with :func:`fit_bound_guide` instead.
    """
    if not isinstance(model, BlockSpin):  # an argument check: the bound is the block-spin model's
        raise ConfigError(f"free_energy_bound needs a BlockSpin model, got {type(model).__name__}")
    n = check_argument("n", n, int, min=2)  # two samples at least, for a standard error
    batch_size = check_argument("batch_size", batch_size, int, min=1)
    check_temperature(T)
    f = bound_samples(model, guide, T, n, batch_size).double()
    return FreeEnergyBound(
        T=float(T),
        L=model.L,
        n=n,
        value=f.mean().item(),
        stderr=(f.std() / math.sqrt(n)).item(),
        exact=exact_free_energy(model.L, T),
        mean_field=mean_field_free_energy(T),
    )


def fit_bound_guide(
    model: BlockSpin, guide, temperatures, steps: int = 500, batch_size: int = 100, lr: float = 3e-3
) -> list[float]:
    """Train ``guide`` as r(z | s) of the bound: maximize E_{p_theta(s, z)}[ln r(z | s)], the model fixed.

    That minimizes E_q KL(p_theta(z | s) || r(z | s)), the gap the guide adds to the bound, with
    samples of the model as data, so binary latents need no score function. Returns the loss per step.
    """
    params = [p for p in guide.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(guide).__name__} has no parameters to fit")
    opt = make_optimizer(params, lr)
    temps = [check_temperature(T) for T in temperatures]
    losses = []
    for step in range(steps):
        T = temps[step % len(temps)]
        with torch.no_grad(), evaluating(model):
            trace = model_trace(model, batch_size, T=T)
        spins = 2 * trace.nodes["x"]["value"] - 1
        replayed = poutine.trace(poutine.replay(guide, trace=trace)).get_trace(lattice_input(spins, T=T))
        loss = -_site_sum(replayed, model.layer_sites).mean() / model.L**2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def enumerate_latents(model: BlockSpin) -> dict[str, torch.Tensor]:
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
def joint_log_probs(model: BlockSpin, guide, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ln p_theta(s, z | K) and ln r(z | s, K) for every latent configuration z: two ``(Z, batch)`` tensors.

    ``guide=None`` skips r. Configurations ride on a particle plate left of the data plate.
    """
    z = enumerate_latents(model)
    n_z = next(iter(z.values())).shape[0]
    with evaluating(model), pyro.plate("particles", n_z, dim=-2):
        trace = poutine.trace(poutine.condition(model, data=z)).get_trace(x)
        log_p = _site_sum(trace, (*model.layer_sites, "x")).expand(n_z, x.shape[0])
        log_r = None
        if guide is not None:
            with evaluating(guide):
                g = poutine.trace(poutine.condition(guide, data=z)).get_trace(x)
            log_r = _site_sum(g, model.layer_sites).expand(n_z, x.shape[0])
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


def _small_lattice(model: BlockSpin, who: str) -> int:
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
    model: BlockSpin,
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
def exact_bound(model: BlockSpin, guide, T: float, batch_size: int = 2048) -> float:
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
