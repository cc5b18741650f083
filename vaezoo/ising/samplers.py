"""Markov chain Monte Carlo samplers for the 2D Ising model, batched over many chains in torch.

Conventions as in :mod:`vaezoo.ising.exact`: ``H(s) = -J sum_<ij> s_i s_j`` on an ``L x L`` torus,
spins ``+1``/``-1``, ``K = J / T``. Chains are tensors of shape ``(n_chains, L, L)`` (any leading batch
shape works for the update kernels) and every random number comes from an explicit
:class:`torch.Generator`, so a run is reproducible from its seed.

Three update kernels; one call of each is one *sweep* (the unit of Monte Carlo time used for
burn-in, thinning and autocorrelation times):

* :func:`heat_bath_sweep` and :func:`metropolis_sweep` update the two checkerboard sublattices one
  after the other. Sites of one colour have all their neighbours on the other colour, so updating a
  whole colour at once is the same as updating its sites one by one in any order; each half-sweep is
  therefore a valid single-site kernel that leaves the Boltzmann distribution invariant, and their
  composition is irreducible and aperiodic at ``T > 0`` (heat bath: every spin can take either
  value; Metropolis: for ``T > 0`` every flip has positive probability). A consistent two-colouring of
  the torus exists only for even ``L``, so these kernels require even ``L``.
  Caveat for Metropolis: a site whose neighbours sum to zero has ``dE = 0`` and flips with
  probability 1, and there are configurations in which every site of each sublattice in turn is in
  that situation (on ``L = 2``: the four stripe states; on ``L = 4``: 36 of the 65,536 states, all at
  ``E = 0``). Those configurations cycle deterministically forever: a closed class the chain can
  neither enter from outside nor leave, so a chain *started* in one is not ergodic. :func:`sample`
  therefore starts Metropolis chains from the ordered state; the heat bath has no such traps.
* :func:`swendsen_wang_sweep` flips whole Fortuin-Kasteleyn clusters, which removes most of the
  critical slowing down of the local kernels (see its docstring for why it is correct).

:func:`sample` wraps them into "give me ``n`` decorrelated lattices": it burns in, measures the
integrated autocorrelation times of the energy and of ``|m|`` on a pilot run (Sokal's automatic
windowing, :func:`vaezoo.ising.observables.integrated_autocorrelation_time`), and thins by
``ceil(2 tau_int)`` sweeps, so consecutive returned samples of a chain are roughly independent.

Performance: a sweep is a few dozen element-wise ops on ``(n_chains, L, L)`` tensors, so for small
lattices the cost is per-op overhead. Batch many chains, and on a busy CPU consider
``torch.set_num_threads(1)``: torch's intra-op threads then mostly wait for each other.

References
----------
N. Metropolis, A. W. Rosenbluth, M. N. Rosenbluth, A. H. Teller and E. Teller, "Equation of state
calculations by fast computing machines", J. Chem. Phys. 21, 1087 (1953).

R. H. Swendsen and J.-S. Wang, "Nonuniversal critical dynamics in Monte Carlo simulations",
Phys. Rev. Lett. 58, 86 (1987).

R. G. Edwards and A. D. Sokal, "Generalization of the Fortuin-Kasteleyn-Swendsen-Wang representation
and Monte Carlo algorithm", Phys. Rev. D 38, 2009 (1988).

A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new algorithms",
in *Functional Integration*, NATO ASI Series B 361, pp. 131-192 (1997).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vaezoo.errors import ConfigError, DataError
from vaezoo.ising.exact import T_C, _check_coupling, _check_temperature
from vaezoo.ising.observables import integrated_autocorrelation_time, validate_lattices

__all__ = [
    "METHODS",
    "ChainTrace",
    "AutocorrelationTimes",
    "SamplingInfo",
    "checkerboard_masks",
    "random_lattices",
    "ordered_lattices",
    "heat_bath_sweep",
    "metropolis_sweep",
    "swendsen_wang_sweep",
    "cluster_labels",
    "run_chains",
    "autocorrelation_times",
    "sample",
]

#: Names accepted by the ``method`` argument of :func:`run_chains` and :func:`sample`.
METHODS = ("swendsen_wang", "heat_bath", "metropolis")

_MIN_BURN_IN = 100  # sweeps discarded before the pilot run, when burn-in is automatic
_PILOT_SWEEPS = 200  # first pilot length; doubled until it covers _PILOT_TAUS autocorrelation times
_PILOT_TAUS = 100
_MAX_PILOT_SWEEPS = 25_600
_BURN_IN_TAUS = 20  # Sokal: discard ~20 tau after a start far from equilibrium
_DEFAULT_MAX_CHAINS = 64


@dataclass(frozen=True)
class ChainTrace:
    """Output of :func:`run_chains`.

    :ivar lattices: final state of every chain, ``(n_chains, L, L)``.
    :ivar energy_per_site: ``E/N`` after every sweep, float64 ``(n_sweeps, n_chains)``.
    :ivar magnetization: signed ``m`` after every sweep, float64 ``(n_sweeps, n_chains)``.
    """

    lattices: Tensor
    energy_per_site: Tensor
    magnetization: Tensor

    @property
    def abs_magnetization(self) -> Tensor:
        """``|m|`` after every sweep, ``(n_sweeps, n_chains)``."""
        return self.magnetization.abs()

    @property
    def magnetization_sq(self) -> Tensor:
        """``m^2`` after every sweep, ``(n_sweeps, n_chains)``."""
        return self.magnetization.square()


@dataclass(frozen=True)
class AutocorrelationTimes:
    """Integrated autocorrelation times (in sweeps, Sokal's convention: ``1/2`` means independent).

    :ivar energy: ``tau_int`` of the energy.
    :ivar abs_magnetization: ``tau_int`` of ``|m|``.
    """

    energy: float
    abs_magnetization: float

    @property
    def max(self) -> float:
        """The larger of the two, which sets how far apart samples must be."""
        return max(self.energy, self.abs_magnetization)


@dataclass(frozen=True)
class SamplingInfo:
    """How :func:`sample` produced its lattices.

    :ivar method: update kernel.
    :ivar n_chains: number of parallel chains.
    :ivar burn_in: sweeps discarded per chain before the first kept sample (pilot included).
    :ivar thin: sweeps between kept samples of one chain.
    :ivar tau: autocorrelation times from the pilot run, or ``None`` if both ``burn_in`` and ``thin``
        were given (no pilot was run).
    :ivar seed: seed of the generator, or ``None`` if a generator was passed in.
    :ivar n_sweeps: total sweeps per chain.
    """

    method: str
    n_chains: int
    burn_in: int
    thin: int
    tau: AutocorrelationTimes | None
    seed: int | None
    n_sweeps: int


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(
            f"unknown sampling method {method!r}; choose one of {', '.join(map(repr, METHODS))}"
        )
    return method


def _check_square(lattices: Tensor, method: str) -> int:
    validate_lattices(lattices)
    L = lattices.shape[-1]
    if lattices.shape[-2] != L:
        raise DataError(f"samplers need square L x L lattices, got {tuple(lattices.shape[-2:])}")
    if method != "swendsen_wang" and L % 2:
        raise DataError(
            f"the checkerboard {method} sweep needs an even L (an odd torus has no two-colouring), "
            f"got L = {L}; use method='swendsen_wang' for odd L"
        )
    return L


def _working_copy(lattices: Tensor) -> Tensor:
    # The kernels compare uniforms with probabilities in the lattice dtype, so integer lattices are
    # promoted; the caller's dtype is restored on the way out.
    return lattices if lattices.is_floating_point() else lattices.to(torch.float32)


def checkerboard_masks(L: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The two sublattices ``(i + j) even`` and ``(i + j) odd`` of an even ``L x L`` torus (bool)."""
    _check_positive_int(L, "L", 2)
    if L % 2:
        raise ConfigError(f"a checkerboard colouring of the torus needs an even L, got L = {L}")
    i = torch.arange(L, device=device)
    even = (i.unsqueeze(1) + i.unsqueeze(0)) % 2 == 0
    return even, ~even


def random_lattices(
    n_chains: int,
    L: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Independent uniformly random spins (an infinite-temperature start), ``(n_chains, L, L)``."""
    _check_positive_int(n_chains, "n_chains")
    _check_positive_int(L, "L", 2)
    bits = torch.randint(0, 2, (n_chains, L, L), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def ordered_lattices(
    n_chains: int, L: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """All spins up (a zero-temperature start), ``(n_chains, L, L)``."""
    _check_positive_int(n_chains, "n_chains")
    _check_positive_int(L, "L", 2)
    return torch.ones(n_chains, L, L, dtype=dtype, device=device)


def _neighbour_sum(spins: Tensor) -> Tensor:
    return (
        torch.roll(spins, 1, dims=-1)
        + torch.roll(spins, -1, dims=-1)
        + torch.roll(spins, 1, dims=-2)
        + torch.roll(spins, -1, dims=-2)
    )


def _uniform(like: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------------------------
# Local kernels
# ----------------------------------------------------------------------------------------------


def _heat_bath(spins: Tensor, K: float, generator: torch.Generator, masks: tuple[Tensor, Tensor]) -> Tensor:
    for mask in masks:
        # P(s_i = +1 | neighbours) = e^{K h} / (e^{K h} + e^{-K h}) = sigmoid(2 K h).
        p_up = torch.sigmoid((2.0 * K) * _neighbour_sum(spins))
        new = torch.where(_uniform(spins, generator) < p_up, 1.0, -1.0).to(spins.dtype)
        spins = torch.where(mask, new, spins)
    return spins


def _metropolis(spins: Tensor, K: float, generator: torch.Generator, masks: tuple[Tensor, Tensor]) -> Tensor:
    # Flipping s_i costs dE / T = 2 K s_i h_i with s_i h_i in {-4, -2, 0, 2, 4}, so the acceptance
    # min(1, exp(-dE / T)) takes three values; selecting them avoids an exp per site, which is
    # both wasteful and, for small tensors on a busy CPU, very slow in torch's threaded kernels.
    def constant(value: float) -> Tensor:
        return torch.tensor(value, dtype=spins.dtype, device=spins.device)

    always, accept_2, accept_4 = constant(1.0), constant(math.exp(-4.0 * K)), constant(math.exp(-8.0 * K))
    for mask in masks:
        cost = spins * _neighbour_sum(spins)
        p_accept = torch.where(cost <= 0, always, torch.where(cost == 2, accept_2, accept_4))
        accept = _uniform(spins, generator) < p_accept
        spins = torch.where(mask & accept, -spins, spins)
    return spins


def heat_bath_sweep(lattices: Tensor, T: float, *, generator: torch.Generator, J: float = 1.0) -> Tensor:
    """One checkerboard heat-bath sweep: each site is redrawn from its conditional distribution.

    :param lattices: ``(..., L, L)`` spins, ``L`` even.
    :param T: temperature ``> 0``.
    :param generator: source of randomness (on the lattices' device).
    :param J: coupling ``> 0``.
    :returns: new lattices (same shape and dtype; the input is not modified).
    """
    L = _check_square(lattices, "heat_bath")
    K = _check_coupling(J) / _check_temperature(T)
    out = _heat_bath(_working_copy(lattices), K, generator, checkerboard_masks(L, lattices.device))
    return out.to(lattices.dtype)


def metropolis_sweep(lattices: Tensor, T: float, *, generator: torch.Generator, J: float = 1.0) -> Tensor:
    """One checkerboard Metropolis sweep: each site proposes a flip, accepted with ``min(1, e^{-dE/T})``.

    Do not start chains from arbitrary random states on tiny lattices: see the module docstring for
    the deterministic ``dE = 0`` cycles that make this kernel non-ergodic from a few special states
    (every ``L = 2`` stripe state, 36 states at ``L = 4``). The ordered state is always safe.

    Arguments and return value as for :func:`heat_bath_sweep`.
    """
    L = _check_square(lattices, "metropolis")
    K = _check_coupling(J) / _check_temperature(T)
    out = _metropolis(_working_copy(lattices), K, generator, checkerboard_masks(L, lattices.device))
    return out.to(lattices.dtype)


# ----------------------------------------------------------------------------------------------
# Swendsen-Wang
# ----------------------------------------------------------------------------------------------


def _cluster_labels(bond_right: Tensor, bond_down: Tensor) -> Tensor:
    batch, rows, cols = bond_right.shape
    n_sites = rows * cols
    device = bond_right.device
    # All chains share one label array; chain b owns the flat indices [b N, (b + 1) N), so labels
    # of different chains can never meet.
    # index_select / masked_select rather than tensor indexing: same result, but advanced indexing
    # goes through a kernel that becomes orders of magnitude slower for these small tensors when
    # the CPU is oversubscribed.
    site = torch.arange(batch * n_sites, device=device).reshape(batch, rows, cols)
    u = torch.cat([site.masked_select(bond_right), site.masked_select(bond_down)])
    v = torch.cat(
        [
            torch.roll(site, -1, dims=-1).masked_select(bond_right),
            torch.roll(site, -1, dims=-2).masked_select(bond_down),
        ]
    )
    label = torch.arange(batch * n_sites, device=device)
    while True:
        lu, lv = label.index_select(0, u), label.index_select(0, v)
        unresolved = lu != lv
        if not bool(unresolved.any()):
            break
        # Bonds whose ends already agree stay agreed (labels of a cluster only ever merge), so they
        # are dropped from later rounds.
        u, v = u.masked_select(unresolved), v.masked_select(unresolved)
        lu, lv = lu.masked_select(unresolved), lv.masked_select(unresolved)
        # Min-label propagation across each open bond: the larger of the two labels (a root, after
        # the jumping below) now points to the smaller one; scatter-amin resolves competing bonds.
        label.scatter_reduce_(0, torch.maximum(lu, lv), torch.minimum(lu, lv), reduce="amin")
        # Pointer jumping to a fixed point: label <- label[label] until every label is a root.
        while True:
            jumped = label.index_select(0, label)
            if torch.equal(jumped, label):
                break
            label = jumped
    offsets = torch.arange(batch, device=device).mul_(n_sites).reshape(batch, 1, 1)
    return label.reshape(batch, rows, cols) - offsets


def cluster_labels(bond_right: Tensor, bond_down: Tensor) -> Tensor:
    """Connected components of the open bonds on the torus, by min-label propagation with pointer jumping.

    Every site starts with its own flat index as label. Each round, for every open bond whose ends
    still carry different labels, the larger label is pointed at the smaller one (a vectorised
    scatter-min over bonds), and pointer jumping (``label <- label[label]``, repeated to a fixed point)
    passes the new minimum to every site that referred to the old one. Invariants: a label is always
    the index of a site in the same cluster (labels only move along open bonds), it never exceeds
    the site's own index, and labels never increase, so the loop terminates. It stops when every
    open bond joins equal labels; then labels are constant on each cluster, and since a label is a
    site of its own cluster, different clusters get different labels. The smallest index ``i0`` of a
    cluster can only point to itself, so it is the label of the whole cluster. Pointer jumping makes
    the number of rounds grow like the logarithm of the cluster size rather than its diameter (a
    handful of rounds even for spanning clusters at ``T_c``).

    :param bond_right: bool ``(..., L, L)``; entry ``(i, j)`` opens the bond ``(i, j)-(i, j+1 mod L)``.
    :param bond_down: bool ``(..., L, L)``; entry ``(i, j)`` opens the bond ``(i, j)-(i+1 mod L, j)``.
    :returns: int64 ``(..., L, L)``: each site's cluster label, the flat index ``i * L + j`` of the
        cluster's smallest site.
    """
    if bond_right.shape != bond_down.shape or bond_right.dim() < 2:
        raise DataError(
            f"bond_right and bond_down must have the same shape (..., L, L), got "
            f"{tuple(bond_right.shape)} and {tuple(bond_down.shape)}"
        )
    if bond_right.dtype != torch.bool or bond_down.dtype != torch.bool:
        raise DataError("bond_right and bond_down must be bool tensors")
    shape = bond_right.shape
    labels = _cluster_labels(bond_right.reshape(-1, *shape[-2:]), bond_down.reshape(-1, *shape[-2:]))
    return labels.reshape(shape)


def _swendsen_wang(spins: Tensor, K: float, generator: torch.Generator) -> Tensor:
    shape = spins.shape
    spins = spins.reshape(-1, *shape[-2:])
    batch, n_sites = spins.shape[0], shape[-1] * shape[-2]
    p_bond = -math.expm1(-2.0 * K)  # 1 - exp(-2K), without cancellation at small K
    bond_right = (spins == torch.roll(spins, -1, dims=-1)) & (_uniform(spins, generator) < p_bond)
    bond_down = (spins == torch.roll(spins, -1, dims=-2)) & (_uniform(spins, generator) < p_bond)
    labels = _cluster_labels(bond_right, bond_down).reshape(batch, n_sites)
    # One fair coin per possible label; a cluster reads the coin of its label site, so distinct
    # clusters (distinct labels) flip independently.
    coins = torch.rand(batch, n_sites, generator=generator, device=spins.device) < 0.5
    flip = torch.gather(coins, 1, labels).reshape(spins.shape)
    return torch.where(flip, -spins, spins).reshape(shape)


def swendsen_wang_sweep(lattices: Tensor, T: float, *, generator: torch.Generator, J: float = 1.0) -> Tensor:
    """One Swendsen-Wang cluster update.

    1. Each bond between *equal* neighbours is opened with probability ``p = 1 - exp(-2K)``; bonds
       between unequal neighbours stay closed.
    2. Clusters (connected components of open bonds on the torus) are labelled with
       :func:`cluster_labels`.
    3. Every cluster is flipped with probability 1/2, independently.

    Why this samples ``p(s) ~ exp(K sum_<ij> s_i s_j)``: the Fortuin-Kasteleyn / Edwards-Sokal joint
    distribution of spins ``s`` and bond occupations ``n`` is
    ``P(s, n) ~ prod_<ij> [(1 - p) delta(n_ij = 0) + p delta(n_ij = 1) delta(s_i = s_j)]``. Summing over
    ``n_ij`` leaves the bond weight ``(1 - p) + p = 1`` if ``s_i = s_j`` and ``1 - p = e^{-2K}`` if
    ``s_i != s_j``; their ratio ``e^{2K}`` is that of ``e^{K s_i s_j}`` for equal versus unequal spins,
    so the marginal of ``s`` is the Ising distribution. Step 1 samples ``n | s`` exactly (bonds are
    conditionally independent, open with probability ``p`` only if the spins agree), and steps 2-3
    sample ``s | n`` exactly (the only constraint is that spins are constant on each cluster, and
    every such assignment has the same weight). The update is thus a two-block Gibbs sampler on
    ``(s, n)``, which leaves ``P(s, n)``, hence the Ising marginal, invariant. It is irreducible and
    aperiodic for ``T > 0``: with positive probability no bond opens and every site flips
    independently, so any state can reach any other in one step.

    The update is vectorised across the batch; clusters of different chains never mix because
    labelling is done per chain.

    :param lattices: ``(..., L, L)`` spins, any ``L >= 2``.
    :param T: temperature ``> 0``.
    :param generator: source of randomness (on the lattices' device).
    :param J: coupling ``> 0``.
    :returns: new lattices (same shape and dtype; the input is not modified).
    """
    _check_square(lattices, "swendsen_wang")
    K = _check_coupling(J) / _check_temperature(T)
    return _swendsen_wang(_working_copy(lattices), K, generator).to(lattices.dtype)


# ----------------------------------------------------------------------------------------------
# Running chains
# ----------------------------------------------------------------------------------------------


def _kernel(method: str, L: int, device: torch.device) -> Callable[[Tensor, float, torch.Generator], Tensor]:
    if method == "swendsen_wang":
        return _swendsen_wang
    masks = checkerboard_masks(L, device)
    local = _heat_bath if method == "heat_bath" else _metropolis

    def sweep(spins: Tensor, K: float, generator: torch.Generator) -> Tensor:
        return local(spins, K, generator, masks)

    return sweep


def _energy_and_magnetization(spins: Tensor, J: float) -> tuple[Tensor, Tensor]:
    s = spins.to(torch.float64)
    bonds = (s * (torch.roll(s, -1, dims=-1) + torch.roll(s, -1, dims=-2))).mean(dim=(-2, -1))
    return -J * bonds, s.mean(dim=(-2, -1))


def run_chains(
    lattices: Tensor,
    T: float,
    n_sweeps: int,
    *,
    generator: torch.Generator,
    method: str = "swendsen_wang",
    J: float = 1.0,
    record: bool = True,
) -> ChainTrace:
    """Run a batch of chains for ``n_sweeps`` sweeps, recording ``E/N`` and ``m`` after each.

    :param lattices: initial states ``(n_chains, L, L)`` (not modified).
    :param T: temperature ``> 0``.
    :param n_sweeps: number of sweeps (``>= 0``).
    :param generator: source of randomness.
    :param method: one of :data:`METHODS`.
    :param J: coupling ``> 0``.
    :param record: if ``False``, skip the measurements (the trace then has zero rows), e.g. for
        burn-in.
    :returns: a :class:`ChainTrace` whose series have shape ``(n_sweeps, n_chains)``.
    """
    _check_method(method)
    if lattices.dim() != 3:
        raise DataError(f"run_chains takes lattices of shape (n_chains, L, L), got {tuple(lattices.shape)}")
    L = _check_square(lattices, method)
    K = _check_coupling(J) / _check_temperature(T)
    _check_positive_int(n_sweeps, "n_sweeps", 0)
    sweep = _kernel(method, L, lattices.device)
    spins = _working_copy(lattices).clone()
    energies, magnetizations = [], []
    for _ in range(n_sweeps):
        spins = sweep(spins, K, generator)
        if record:
            e, m = _energy_and_magnetization(spins, J)
            energies.append(e)
            magnetizations.append(m)
    n_chains = lattices.shape[0]
    empty = torch.zeros(0, n_chains, dtype=torch.float64, device=lattices.device)
    return ChainTrace(
        lattices=spins.to(lattices.dtype),
        energy_per_site=torch.stack(energies) if energies else empty,
        magnetization=torch.stack(magnetizations) if magnetizations else empty.clone(),
    )


def autocorrelation_times(trace: ChainTrace, window_factor: float = 6.0) -> AutocorrelationTimes:
    """Integrated autocorrelation times of ``E`` and ``|m|`` from a :class:`ChainTrace`.

    Uses Sokal's automatic windowing, pooling the autocorrelation functions of all chains. Discard
    the burn-in before calling this; the estimate is trustworthy once the trace is much longer (per
    chain) than the returned times.
    """
    if trace.energy_per_site.shape[0] < 2:
        raise DataError("autocorrelation_times needs a trace with at least 2 recorded sweeps")
    return AutocorrelationTimes(
        energy=integrated_autocorrelation_time(trace.energy_per_site, window_factor),
        abs_magnetization=integrated_autocorrelation_time(trace.abs_magnetization, window_factor),
    )


def sample(
    L: int,
    T: float,
    n_samples: int,
    *,
    method: str = "swendsen_wang",
    J: float = 1.0,
    n_chains: int | None = None,
    burn_in: int | None = None,
    thin: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    symmetrize: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    return_info: bool = False,
) -> Tensor | tuple[Tensor, SamplingInfo]:
    """Draw ``n_samples`` approximately independent equilibrium lattices.

    ``n_chains`` chains run in parallel (below ``T_c``, and always for Metropolis, from the ordered
    state, otherwise from random spins). After ``burn_in`` sweeps each chain contributes one
    lattice every ``thin`` sweeps; the output interleaves chains (consecutive rows come from different
    chains).

    When ``burn_in`` or ``thin`` is ``None`` it is chosen automatically: after ``100`` sweeps a pilot run
    (which also counts as burn-in) measures ``tau = max(tau_int(E), tau_int(|m|))``, doubling its
    length until it spans ``100 tau`` (or 25,600 sweeps, with a warning); then the burn-in is extended
    to at least ``20 tau`` and ``thin = ceil(2 tau)``, the spacing at which samples are effectively
    independent (``Var(mean) = 2 tau sigma^2 / n``).

    With ``symmetrize=True`` every returned lattice is flipped globally with probability 1/2. The
    Hamiltonian is invariant under the flip, so this maps the Boltzmann distribution to itself; it
    restores the ``s -> -s`` symmetry that local kernels below ``T_c`` practically never explore
    (tunnelling between the ordered states takes a time exponential in ``L``).

    :param L: lattice size (even for the checkerboard methods).
    :param T: temperature ``> 0``.
    :param n_samples: number of lattices to return.
    :param method: one of :data:`METHODS`.
    :param J: coupling ``> 0``.
    :param n_chains: parallel chains (default ``min(n_samples, 64)``).
    :param burn_in: sweeps to discard per chain, or ``None`` for automatic.
    :param thin: sweeps between kept samples, or ``None`` for automatic.
    :param seed: seed for a new generator; ``None`` draws a fresh one (reported in the info).
    :param generator: use this generator instead (mutually exclusive with ``seed``).
    :param symmetrize: apply the random global flip described above.
    :param dtype: dtype of the returned lattices.
    :param device: device to run on.
    :param return_info: also return a :class:`SamplingInfo`.
    :returns: lattices ``(n_samples, L, L)``, and the info if requested.
    """
    _check_method(method)
    _check_positive_int(L, "L", 2)
    if method != "swendsen_wang" and L % 2:
        raise ConfigError(f"method {method!r} needs an even L, got L = {L}; use method='swendsen_wang'")
    T = _check_temperature(T)
    J = _check_coupling(J)
    _check_positive_int(n_samples, "n_samples")
    n_chains = min(n_samples, _DEFAULT_MAX_CHAINS) if n_chains is None else n_chains
    _check_positive_int(n_chains, "n_chains")
    if burn_in is not None:
        _check_positive_int(burn_in, "burn_in", 0)
    if thin is not None:
        _check_positive_int(thin, "thin")
    if not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point dtype, got {dtype}")
    if generator is not None and seed is not None:
        raise ConfigError("pass either seed or generator, not both")
    if generator is None:
        generator = torch.Generator(device=device)
        seed = generator.seed() if seed is None else generator.manual_seed(seed).initial_seed()

    # The ordered start avoids Metropolis's deterministic dE = 0 cycles (module docstring); below T_c
    # it is also already close to equilibrium.
    if T < T_C * J or method == "metropolis":
        spins = ordered_lattices(n_chains, L, dtype=dtype, device=device)
    else:
        spins = random_lattices(n_chains, L, generator=generator, dtype=dtype, device=device)

    def run(n: int, record: bool) -> ChainTrace:
        return run_chains(spins, T, n, generator=generator, method=method, J=J, record=record)

    done = burn_in if burn_in is not None else _MIN_BURN_IN
    spins = run(done, record=False).lattices
    tau = None
    if burn_in is None or thin is None:
        n_pilot = _PILOT_SWEEPS
        while True:
            trace = run(n_pilot, record=True)
            spins = trace.lattices
            done += n_pilot
            tau = autocorrelation_times(trace)
            if n_pilot >= _PILOT_TAUS * tau.max:
                break
            if n_pilot >= _MAX_PILOT_SWEEPS:
                warnings.warn(
                    f"{method} at L={L}, T={T}: the pilot run of {n_pilot} sweeps spans only "
                    f"{n_pilot / tau.max:.0f} autocorrelation times (tau = {tau.max:.1f} sweeps); the "
                    "estimated tau, and hence thinning, may be too small. Consider method='swendsen_wang'.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            n_pilot *= 2
        if burn_in is None and done < _BURN_IN_TAUS * tau.max:
            extra = math.ceil(_BURN_IN_TAUS * tau.max) - done
            spins = run(extra, record=False).lattices
            done += extra
        if thin is None:
            thin = max(1, math.ceil(2.0 * tau.max))
    assert thin is not None

    per_chain = math.ceil(n_samples / n_chains)
    kept = []
    for _ in range(per_chain):
        spins = run(thin, record=False).lattices
        kept.append(spins)
    out = torch.stack(kept).reshape(-1, L, L)[:n_samples]
    if symmetrize:
        flips = torch.rand(out.shape[0], generator=generator, device=out.device) < 0.5
        out = torch.where(flips[:, None, None], -out, out)
    out = out.to(dtype)
    if not return_info:
        return out
    info = SamplingInfo(
        method=method,
        n_chains=n_chains,
        burn_in=done,
        thin=thin,
        tau=tau,
        seed=seed,
        n_sweeps=done + per_chain * thin,
    )
    return out, info
